// RMSNorm over the last dim:
//   out[r, j] = (x[r, j] * inverseSqrt(mean_j(x[r, :]^2) + eps)) * weight[j]
// (HF Llama order: normalize, then scale by the weight.)
//
// One thread per row, no barriers (a workgroup reduction costs more than it
// saves on SwiftShader at these sizes). The sum of squares runs in a fixed
// order whatever the number of rows: four lane sums over 4-chunks,
// ascending, s = (a.x + a.y) + (a.z + a.w), then the dim % 4 tail ascending.
//   main:         out = rmsnorm(x)
//   main_inplace: x = rmsnorm(x)   (one buffer cannot be bound twice when written)
//
// Dispatch: ceil(rows / WG) workgroups, 1-D (split over x/y by `grid()`).

struct Params { rows: u32, dim: u32, eps: f32 }

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn row(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn inv_rms(base: u32) -> f32 {
  let d4 = p.dim / 4u;
  var a = vec4<f32>(0.0);
  for (var j = 0u; j < d4; j++) {
    let o = base + 4u * j;
    let v = vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
    a = a + v * v;
  }
  var s = (a.x + a.y) + (a.z + a.w);
  for (var j = 4u * d4; j < p.dim; j++) {
    let v = x[base + j];
    s = s + v * v;
  }
  return inverseSqrt(s / f32(p.dim) + p.eps);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = row(wid, nwg, lid);
  if (r >= p.rows) { return; }
  let base = r * p.dim;
  let inv = inv_rms(base);
  for (var j = 0u; j < p.dim; j++) { out[base + j] = (x[base + j] * inv) * weight[j]; }
}

@compute @workgroup_size(WG)
fn main_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let r = row(wid, nwg, lid);
  if (r >= p.rows) { return; }
  let base = r * p.dim;
  let inv = inv_rms(base);
  for (var j = 0u; j < p.dim; j++) { x[base + j] = (x[base + j] * inv) * weight[j]; }
}
