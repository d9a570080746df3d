// Weight loaders for matmul.wgsl (appended to it): q8 weights [n, k] in blocks of 32 along k
// (Q8_0's layout idea): each row padded with zeros to kp = 32 * ceil(k / 32) values, stored as
// int8 four per u32 (element 4j + b in byte b, little-endian), so a row is kp / 4 words and a
// block is 8 words; one f32 scale per block, row-major [n, kp / 32]. value = int8 * scale.
// Dequantizing is exact in f32 (a small integer times the scale), and the math stays f32.
//   w_row(c) / w_row_any(c): word index of row c (the same in both paths: rows are padded)

@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(5) var<storage, read> wscale: array<f32>;

fn q8_words() -> u32 { return ((p.k + 31u) / 32u) * 8u; }
fn q8_unpack(w: u32) -> vec4<f32> {
  let v = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u);
  return vec4<f32>(v);
}

fn w_row(c: u32) -> u32 { return c * q8_words(); }
fn w_vec(base: u32, j: u32) -> vec4<f32> { return q8_unpack(wq[base + j]) * wscale[(base + j) / 8u]; }

fn w_row8(c: u32) -> u32 { return w_row(c); }
fn w_pair(base: u32, j: u32) -> Pair { return Pair(w_vec(base, 2u * j), w_vec(base, 2u * j + 1u)); }

fn w_row_any(c: u32) -> u32 { return c * q8_words(); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> { return w_vec(base, j); }
fn w_one_any(base: u32, i: u32) -> f32 {
  let o = base + i / 4u;
  let b = i & 3u;
  return f32(bitcast<i32>(wq[o] << (24u - 8u * b)) >> 24u) * wscale[o / 8u];
}
