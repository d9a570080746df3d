// SwiGLU activation over a fused gate/up projection:
//   out[r, j] = silu(g) * u,  g = gateUp[r, j], u = gateUp[r, f + j],  silu(g) = g / (1 + exp(-g))
// gateUp is [n, 2f] (gate half first), out is [n, f]. For g below about -88,
// exp(-g) overflows to inf and silu(g) is -0, its correctly rounded value.
//
// One element of out per thread. Dispatch: ceil(n * f / WG) workgroups, 1-D
// (split over x/y by `grid()`).

struct Params { n: u32, f: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.n * p.f) { return; }
  let r = i / p.f;
  let g = gateUp[i + r * p.f];          // r * 2f + j
  let u = gateUp[i + r * p.f + p.f];    // r * 2f + f + j
  out[i] = (g / (1.0 + exp(-g))) * u;
}
