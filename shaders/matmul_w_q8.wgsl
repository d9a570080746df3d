// Weight loaders for matmul.wgsl (appended to it): q8 weights [n, k] in blocks of 32 along k
// (Q8_0's layout idea): each row padded with zeros to kp = 32 * ceil(k / 32) values, stored as
// int8 four per u32 (element 4j + b in byte b, little-endian), so a row is kp / 4 words and a
// block is 8 words; one f32 scale per block, row-major [n, kp / 32]. value = int8 * scale.
// Dequantizing is exact in f32 (a small integer times the scale), and the math stays f32.
//   w_row(c) / w_row_any(c): word index of row c (the same in both paths: rows are padded)
//
// The codes reach the top byte by multiplies, not shifts (SwiftShader runs vector shifts and
// divisions lane by lane), so they decode as int8 * 2^24, and the scale carries the 2^-24:
// the same products as int8 * scale, exactly (scales below 2^-102 would be subnormal; a
// block's scale is max|w| / 127).
//   w_row8(c) / w_pair(base, j): the 8-chunk j of row c (two words, one block) in one load

@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(2) var<storage, read> wq2: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> wscale: array<f32>;

const BYTE_UP = vec4<u32>(16777216u, 65536u, 256u, 1u);  // byte b to the top: << 24 - 8b
const TOP_BYTE = vec4<u32>(0xff000000u);
const DOWN_24 = 5.9604644775390625e-8;                    // 2^-24

fn q8_words() -> u32 { return ((p.k + 31u) / 32u) * 8u; }
fn q8_unpack(w: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(w) * BYTE_UP) & TOP_BYTE)); }

fn w_row(c: u32) -> u32 { return c * q8_words(); }
fn w_vec(base: u32, j: u32) -> vec4<f32> { return q8_unpack(wq[base + j]) * (wscale[(base + j) / 8u] * DOWN_24); }

fn w_row8(c: u32) -> u32 { return c * (q8_words() / 2u); }
fn w_pair(base: u32, j: u32) -> Pair {
  let u = wq2[base + j];
  let s = wscale[(base + j) / 4u] * DOWN_24;
  return Pair(q8_unpack(u.x) * s, q8_unpack(u.y) * s);
}

fn w_row_any(c: u32) -> u32 { return c * q8_words(); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> { return w_vec(base, j); }
fn w_one_any(base: u32, i: u32) -> f32 { return w_vec(base, i / 4u)[i & 3u]; }
