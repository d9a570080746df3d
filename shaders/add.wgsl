// Residual add over n f32 elements.
//   main:         out[i] = a[i] + b[i]
//   main_inplace: a[i]  += b[i]      (WebGPU forbids binding one buffer to
//                                     two writable bindings, so in-place
//                                     is its own entry point without `out`)
//
// Dispatch: ceil(n / WG) workgroups of WG threads, 1-D (split over x/y by
// `grid()` when above 65535); one element per thread.

struct Params { n: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i < p.n) { out[i] = a[i] + b[i]; }
}

@compute @workgroup_size(WG)
fn main_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i < p.n) { a[i] = a[i] + b[i]; }
}
