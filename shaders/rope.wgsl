// Rotary position embedding, in place, HF rotate-half convention. For each
// of n rows (row stride `rowStride` elements), each of `numHeads` heads of
// headDim D starting at element `headOffset`, and each i < D/2:
//   x1 = x[i], x2 = x[i + D/2], c = cos[pos, i], s = sin[pos, i]
//   x[i] = x1 * c - x2 * s;  x[i + D/2] = x2 * c + x1 * s
// with pos = positions[r] (clamped to maxPositions - 1). The table holds
// [cos: maxPositions x D/2][sin: maxPositions x D/2], precomputed on the CPU.
//
// One thread per (row, head, i): threads touch disjoint pairs, no barriers.
// Dispatch: ceil(n * numHeads * D/2 / WG) workgroups, 1-D (split by `grid()`).

struct Params { n: u32, numHeads: u32, half: u32, rowStride: u32, headOffset: u32, maxPositions: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> cosSin: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  let perRow = p.numHeads * p.half;
  if (t >= p.n * perRow) { return; }
  let r = t / perRow;
  let h = (t - r * perRow) / p.half;
  let i = t - r * perRow - h * p.half;
  let pos = min(positions[r], p.maxPositions - 1u);
  let c = cosSin[pos * p.half + i];
  let s = cosSin[(p.maxPositions + pos) * p.half + i];
  let o = r * p.rowStride + p.headOffset + h * 2u * p.half + i;
  let x1 = x[o];
  let x2 = x[o + p.half];
  x[o] = x1 * c - x2 * s;
  x[o + p.half] = x2 * c + x1 * s;
}
