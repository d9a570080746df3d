// Weight loaders for matmul.wgsl (appended to it): f16 weights [n, k] packed
// two per u32 (element 2i in the low half, pairs along k), so k is even and
// a row is k/2 words; unpack2x16float is exact, the math stays f32.
//   w_row(c) / w_vec(base, j): row c as 4-chunks of two words (k % 4 == 0)
//   w_row_any(c) / w_vec_any(base, j) / w_one_any(base, i): any even k, u32 loads

@group(0) @binding(2) var<storage, read> w2: array<vec2<u32>>;  // vec4 path
@group(0) @binding(2) var<storage, read> wu: array<u32>;        // mm_any

fn w_row(c: u32) -> u32 { return c * (p.k / 4u); }
fn w_vec(base: u32, j: u32) -> vec4<f32> {
  let h = w2[base + j];
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

fn w_row_any(c: u32) -> u32 { return c * (p.k / 2u); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> {
  let o = base + 2u * j;
  return vec4<f32>(unpack2x16float(wu[o]), unpack2x16float(wu[o + 1u]));
}
fn w_one_any(base: u32, i: u32) -> f32 {
  let h = unpack2x16float(wu[base + i / 2u]);
  return select(h.x, h.y, (i & 1u) == 1u);
}
