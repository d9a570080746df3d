// Weight loaders for matmul.wgsl (appended to it): f32 weights [n, k], row-major.
//   w_row(c) / w_vec(base, j): row c as vec4 chunks (k % 4 == 0); w_pair(base, j): chunks 2j, 2j + 1
//   w_row_any(c) / w_vec_any(base, j) / w_one_any(base, i): any k, scalar loads

@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;  // vec4 path
@group(0) @binding(2) var<storage, read> ws: array<f32>;        // mm_any

fn w_row(c: u32) -> u32 { return c * (p.k / 4u); }
fn w_vec(base: u32, j: u32) -> vec4<f32> { return w4[base + j]; }
fn w_row8(c: u32) -> u32 { return w_row(c); }
fn w_pair(base: u32, j: u32) -> Pair { return Pair(w4[base + 2u * j], w4[base + 2u * j + 1u]); }

fn w_row_any(c: u32) -> u32 { return c * p.k; }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> {
  let o = base + 4u * j;
  return vec4<f32>(ws[o], ws[o + 1u], ws[o + 2u], ws[o + 3u]);
}
fn w_one_any(base: u32, i: u32) -> f32 { return ws[base + i]; }
