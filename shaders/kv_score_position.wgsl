// Position scores (StreamingLLM, sliding window): only where a token sits matters.
//
//   for kv head g < numKvHeads, token j < numTokens:
//     out[g*numTokens + j] = keepScore   if j < sinks   (attention sinks)
//                          = f32(j)      otherwise      (recency: later = keep)
//   f32(j) is exact below 2^24 tokens. Sliding window: sinks = 0.
//
// Dispatch: one thread per (g, j): ceil(numKvHeads*numTokens / WG)
// workgroups, 1-D (split over x/y by `grid()`). Reads no KV.

struct Params {
  numTokens: u32,
  numKvHeads: u32,
  sinks: u32,
  keepScore: f32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let j = t % p.numTokens;
  out[t] = select(f32(j), p.keepScore, j < p.sinks);
}
