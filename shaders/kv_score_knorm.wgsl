// Key-norm scores of one sequence's cached tokens (KnormPress), f32 math.
//
//   for kv head g < numKvHeads, token j < numTokens:
//     page(j) = blockTable[j / pageSize],  off(j) = j % pageSize
//     out[g*numTokens + j] = -sqrt(sum_d K[page(j)][g][off(j)][d]^2)
//   (higher = keep: low-norm keys are kept.)
//
// Pool layout (u32 words): [page][K=0|V=1][kvHead][slot][headDim], f32 bits
// (KV_F16 = false) or pack2x16float pairs (KV_F16 = true).
//
// Dispatch: one thread per (g, j): ceil(numKvHeads*numTokens / WG)
// workgroups, 1-D (split over x/y by `grid()`). No barriers.

struct Params {
  numTokens: u32,
  numKvHeads: u32,
  pageSize: u32,
}

override WG: u32 = 64;
override KV_F16: bool = false;
override HEAD_DIM: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> blockTable: array<u32>;
@group(0) @binding(2) var<storage, read> pool: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn rowWords() -> u32 { if (KV_F16) { return HEAD_DIM / 2u; } return HEAD_DIM; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let g = t / p.numTokens;
  let j = t % p.numTokens;
  let page = blockTable[j / p.pageSize];
  let w = kvRowStart(page, 0u, g, j % p.pageSize, p.numKvHeads, p.pageSize, rowWords());
  var s = 0.0;
  if (KV_F16) {
    for (var i = 0u; i < HEAD_DIM / 2u; i++) { let v = unpack2x16float(pool[w + i]); s += dot(v, v); }
  } else {
    for (var d = 0u; d < HEAD_DIM; d++) { let v = bitcast<f32>(pool[w + d]); s += v * v; }
  }
  out[t] = -sqrt(s);
}
