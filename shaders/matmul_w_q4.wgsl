// Weight loaders for matmul.wgsl (appended to it): q4 weights [n, k] in blocks of 32 along k
// (Q4_0's idea): each row padded with zeros to kp = 32 * ceil(k / 32) values, stored as 4-bit
// codes q in 0..15 eight per u32 (element 8j + b in bits 4b..4b+3), so a row is kp / 8 words
// and a block is 4 words; one f32 scale per block, row-major [n, kp / 32]. value = (q - 8) * scale.
// Dequantizing is exact in f32; the math stays f32.
//   base is a word index; a vec4 chunk j (elements 4j..4j+3) is half of word base + j / 2.

@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(5) var<storage, read> wscale: array<f32>;

fn q4_words() -> u32 { return ((p.k + 31u) / 32u) * 4u; }

fn w_row(c: u32) -> u32 { return c * q4_words(); }
fn w_vec(base: u32, j: u32) -> vec4<f32> {
  let o = base + j / 2u;
  let h = wq[o] >> (16u * (j & 1u));
  let q = vec4<u32>(h & 15u, (h >> 4u) & 15u, (h >> 8u) & 15u, (h >> 12u) & 15u);
  return (vec4<f32>(q) - vec4<f32>(8.0)) * wscale[o / 4u];
}

fn w_row8(c: u32) -> u32 { return w_row(c); }
fn w_pair(base: u32, j: u32) -> Pair { return Pair(w_vec(base, 2u * j), w_vec(base, 2u * j + 1u)); }

fn w_row_any(c: u32) -> u32 { return c * q4_words(); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> { return w_vec(base, j); }
fn w_one_any(base: u32, i: u32) -> f32 {
  let o = base + i / 8u;
  let q = (wq[o] >> (4u * (i & 7u))) & 15u;
  return (f32(q) - 8.0) * wscale[o / 4u];
}
