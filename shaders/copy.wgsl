// Plain copy, a memory-bandwidth probe (roofline of the decode benchmark):
//   dst[i] = src[i] for i < words (u32 words)
//   main_vec4: the first floor(words / 4) * 4 words as vec4<u32>, one vec4 per thread
//   main_tail: words [p.start, p.words) one per thread (the 0-3 words left over)
//
// Dispatch: ceil(vec4s / WG) workgroups for main_vec4, ceil((words - start) / WG)
// for main_tail; 1-D, split over x/y by `grid()` when above 65535.

struct Params { words: u32, start: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i < p.words / 4u) { dst4[i] = src4[i]; }
}

@compute @workgroup_size(WG)
fn main_tail(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = p.start + index(wid, nwg, lid);
  if (i < p.words) { dst[i] = src[i]; }
}
