// Causal attention over a paged KV pool, one pass with online softmax.
//
//   for query row r < nq, head h < numHeads, with  T = rowInfo[2r] (offset of
//   the row's block table in blockTables), P = rowInfo[2r+1] (its position),
//   g = h / (numHeads / numKvHeads) (GQA), keys j = 0..P:
//     page(j) = blockTables[T + j / pageSize],   off(j) = j % pageSize
//     s_j     = scale * <q[r, h, :], K[page(j)][g][off(j)][:]>
//     out[r*numHeads*headDim + h*headDim + d] = sum_j softmax(s)_j * V[page(j)][g][off(j)][d]
//   q of (r, h) at q[r*qRowStride + qOffset + h*headDim + d].
//
// Pool layout (u32 words): [page][K=0|V=1][kvHead][slot][headDim] with f32
// bits (KV_F16 = false) or pack2x16float pairs (KV_F16 = true). Addressing is
// in "pairs" (two consecutive d): one word for f16, two for f32.
//
// Online softmax, f32: keys go in ascending order in blocks of BLOCK keys
// (block b = keys [b*BLOCK, b*BLOCK+BLOCK) ∩ [0, P]); per block: scores,
// block max, one rescale of (sum, acc) by exp(mOld - mNew), then
// sum += exp(s_j - m), acc += exp(s_j - m) * V_j in key order. This sequence
// of operations depends only on the row's own P and data, so a row's result
// is bitwise the same whatever nq is and whatever the other rows hold
// (batch invariance).
//
// Workgroup layout: WG threads, one thread per (row, head), each with a
// private q and accumulator of headDim/2 vec2 (headDim even, <= 2*MAX_PAIRS).
// No barriers, no shared memory (SwiftShader pays dearly for barriers).
// Dispatch: ceil(nq * numHeads / WG) workgroups, 1-D (split over x/y by
// `grid()`). Threads of one workgroup are consecutive heads of consecutive
// rows, so GQA heads sharing a kv head read the same K/V lines.

struct Params {
  nq: u32,
  numHeads: u32,
  group: u32,       // numHeads / numKvHeads
  numKvHeads: u32,
  pairs: u32,       // headDim / 2
  pageSize: u32,
  qRowStride: u32,
  qOffset: u32,
  scale: f32,
}

override WG: u32 = 32;
override KV_F16: bool = false;
override PAIRS: u32 = 32u;
const MAX_PAIRS: u32 = 128u;  // headDim <= 256
const BLOCK: u32 = 16u;
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> blockTables: array<u32>;
@group(0) @binding(3) var<storage, read> rowInfo: array<u32>;
@group(0) @binding(4) var<storage, read> pool: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Pair i of the pool (in pair units) as two f32.
fn kv2(i: u32) -> vec2<f32> {
  if (KV_F16) { return unpack2x16float(pool[i]); }
  return vec2<f32>(bitcast<f32>(pool[2u * i]), bitcast<f32>(pool[2u * i + 1u]));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= p.nq * p.numHeads) { return; }
  let r = t / p.numHeads;
  let h = t % p.numHeads;
  let g = h / p.group;
  let table = rowInfo[2u * r];
  let nk = rowInfo[2u * r + 1u] + 1u;
  let n2 = PAIRS;

  var qv: array<vec2<f32>, MAX_PAIRS>;
  var acc: array<vec2<f32>, MAX_PAIRS>;
  let qBase = r * p.qRowStride + p.qOffset + h * 2u * n2;
  for (var i = 0u; i < n2; i++) {
    qv[i] = vec2<f32>(q[qBase + 2u * i], q[qBase + 2u * i + 1u]) * p.scale;
  }

  // Pair offsets: one (page, K|V, head) block is pageSize*pairs pairs.
  let headPairs = p.pageSize * n2;
  let pagePairs = 2u * p.numKvHeads * headPairs;
  let kHead = g * headPairs;
  let vHead = (p.numKvHeads + g) * headPairs;

  var m = NEG_BIG;
  var l = 0.0;
  var s: array<f32, BLOCK>;
  for (var j0 = 0u; j0 < nk; j0 += BLOCK) {
    let cnt = min(BLOCK, nk - j0);
    var mb = m;
    for (var j = 0u; j < cnt; j++) {
      let key = j0 + j;
      let base = blockTables[table + key / p.pageSize] * pagePairs + kHead + (key % p.pageSize) * n2;
      var sc = 0.0;
      for (var i = 0u; i < n2; i++) {
        let k = kv2(base + i);
        sc = sc + qv[i].x * k.x + qv[i].y * k.y;
      }
      s[j] = sc;
      mb = max(mb, sc);
    }
    if (mb > m) {
      let corr = exp(m - mb);
      l = l * corr;
      for (var i = 0u; i < n2; i++) { acc[i] = acc[i] * corr; }
      m = mb;
    }
    for (var j = 0u; j < cnt; j++) {
      let key = j0 + j;
      let base = blockTables[table + key / p.pageSize] * pagePairs + vHead + (key % p.pageSize) * n2;
      let e = exp(s[j] - m);
      l = l + e;
      for (var i = 0u; i < n2; i++) { acc[i] = acc[i] + e * kv2(base + i); }
    }
  }

  let inv = 1.0 / l;
  let oBase = (r * p.numHeads + h) * 2u * n2;
  for (var i = 0u; i < n2; i++) {
    let o = acc[i] * inv;
    out[oBase + 2u * i] = o.x;
    out[oBase + 2u * i + 1u] = o.y;
  }
}
