// Weight loaders for matmul.wgsl (appended to it): q4 weights [n, k] in blocks of 32 along k
// (Q4_0's idea): each row padded with zeros to kp = 32 * ceil(k / 32) values, stored as 4-bit
// codes q in 0..15 eight per u32 (element 8j + b in bits 4b..4b+3), so a row is kp / 8 words
// and a block is 4 words; one f32 scale per block, row-major [n, kp / 32]. value = (q - 8) * scale.
// Dequantizing is exact in f32; the math stays f32.
//   base is a word index; a vec4 chunk j (elements 4j..4j+3) is half of word base + j / 2.
//
// As in q8, the codes reach the top nibble by multiplies, not shifts; flipping each nibble's
// top bit first (^ 8) turns code q into the 4-bit two's complement q - 8, so the top nibble
// read as i32 is (q - 8) * 2^28 and the scale carries the 2^-28 (exact; subnormal only for
// scales below 2^-98).
//   w_row8(c) / w_pair(base, j): the 8-chunk j of row c is word base + j

@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(5) var<storage, read> wscale: array<f32>;

const NIBBLE_UP_LO = vec4<u32>(268435456u, 16777216u, 1048576u, 65536u);  // nibble b: << 28 - 4b
const NIBBLE_UP_HI = vec4<u32>(4096u, 256u, 16u, 1u);                    // nibbles 4..7
const TOP_NIBBLE = vec4<u32>(0xf0000000u);
const DOWN_28 = 3.725290298461914e-9;                                    // 2^-28

fn q4_words() -> u32 { return ((p.k + 31u) / 32u) * 4u; }
fn q4_unpack(w: u32, up: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(w ^ 0x88888888u) * up) & TOP_NIBBLE));
}

fn w_row(c: u32) -> u32 { return c * q4_words(); }
fn w_vec(base: u32, j: u32) -> vec4<f32> {
  let o = base + j / 2u;
  let up = select(NIBBLE_UP_LO, NIBBLE_UP_HI, (j & 1u) == 1u);
  return q4_unpack(wq[o], up) * (wscale[o / 4u] * DOWN_28);
}

fn w_row8(c: u32) -> u32 { return w_row(c); }
fn w_pair(base: u32, j: u32) -> Pair {
  let o = base + j;
  let u = wq[o];
  let s = wscale[o / 4u] * DOWN_28;
  return Pair(q4_unpack(u, NIBBLE_UP_LO) * s, q4_unpack(u, NIBBLE_UP_HI) * s);
}

fn w_row_any(c: u32) -> u32 { return c * q4_words(); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> { return w_vec(base, j); }
fn w_one_any(base: u32, i: u32) -> f32 { return w_vec(base, i / 4u)[i & 3u]; }
