// Protects tokens outside a sequence's compressible region from eviction:
//   scores[h, t] = PROTECTED  for t < start or t >= end,  unchanged otherwise
// so a top-k over the scores evicts only inside [start, end) (e.g. only the
// image tokens, or everything but the observation window).
//
// Dispatch: ceil(numKvHeads * numTokens / WG) workgroups, 1-D (grid()).

struct Params { numTokens: u32, total: u32, start: u32, end: u32 }

override WG: u32 = 256;
const PROTECTED: f32 = 3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.total) { return; }
  let t = i % p.numTokens;
  if (t < p.start || t >= p.end) { scores[i] = PROTECTED; }
}
