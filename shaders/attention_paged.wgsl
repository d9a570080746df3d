// Causal attention over a paged KV pool with online softmax, f32 math, and an
// optional masked key range per row (StreamingLLM-style "sinks + recent"
// windows: visible = j < A or j >= B).
//
//   for query row r < nq, head h < numHeads, with  T = rowInfo[2r] (offset of
//   the row's block table in blockTables), P = rowInfo[2r+1] (its position),
//   [A, B) = [rowMask[2r], rowMask[2r+1]) when MASKED (else empty),
//   g = h / (numHeads / numKvHeads) (GQA), and the visible keys
//   Vis = { j <= P : j < A or j >= B }:
//     page(j) = blockTables[T + j / pageSize],   off(j) = j % pageSize
//     s_j     = scale * <q[r, h, :], K[page(j)][g][off(j)][:]>
//     out[r*numHeads*headDim + h*headDim + d] =
//         sum_{j in Vis} exp(s_j) * V[page(j)][g][off(j)][d] / sum_{j in Vis} exp(s_j)
//   i.e. exactly the softmax over the visible keys, as if the masked ones did
//   not exist. Contract (not checked here): A <= B <= P, so key P is always
//   visible and A = B masks nothing; a row with no visible key gets NaN.
//   q of (r, h) at q[r*qRowStride + qOffset + h*headDim + d].
//
// Pool layout (u32 words): [page][K=0|V=1][kvHead][slot][headDim] holding f32
// bits (KV_F16 = false) or pack2x16float pairs (KV_F16 = true). Head dims are
// read as vec4 quads plus one trailing pair when HEAD_DIM % 4 == 2.
//
// Reduction structure (fixed by the row's own P and [A, B) only — batch invariance):
//   keys are cut into splits of SPLIT keys, [s*SPLIT, min((s+1)*SPLIT, P+1)).
//   Within a split: ascending blocks of BLOCK keys; per block the scores, the
//   block max, one rescale of (l, acc) by exp(mOld - mNew), then
//   l += e_j, acc += e_j * V_j with e_j = exp(s_j - m), in key order.
//   Splits are merged in ascending order:
//     M' = max(M, m_s); L = L*exp(M - M') + l_s*exp(m_s - M');
//     TOT = TOT*exp(M - M') + acc_s*exp(m_s - M');  out = TOT * (1 / L).
//   The mask (MASKED = true) only removes terms, never changes one: a masked
//   key is skipped by both key loops (its score never enters the block max, it
//   adds nothing to l or acc — no exp(s - m) weight, which would be 1 while m
//   is still NEG_BIG), a block wholly inside [A, B) is skipped, and a split
//   wholly inside [A, B) is skipped by main, split_partial (the thread idles)
//   and split_combine alike, so it takes no part in the merge. MASKED = false
//   compiles none of this: the unmasked kernel is unchanged.
// `main` runs all of it in one thread; `split_partial` + `split_combine` run
// the same functions with the splits in parallel, so both paths execute the
// same floating-point operations and agree bitwise (tested on SwiftShader).
//
// Entry points and dispatch (1-D, split over x/y by `grid()`; WG threads per
// workgroup; no barriers, no shared memory — SwiftShader pays dearly for
// barriers). Bindings: 1 q, 2 blockTables, 3 rowInfo, 4 pool, 5 out, 6 rowMask
// (any read-only buffer when MASKED = false: never read), 7 partials (split only):
//   main:          one thread per (row, head): ceil(nq*numHeads / WG) workgroups.
//                  Threads of one workgroup are consecutive heads of consecutive
//                  rows, so GQA heads sharing a kv head read the same K/V lines.
//   split_partial: one thread per (row, head, split < maxSplits):
//                  ceil(nq*numHeads*maxSplits / WG) workgroups; writes
//                  partials[((r*numHeads + h)*maxSplits + s)*(HEAD_DIM + 2)] =
//                  m, l, acc[0..HEAD_DIM). Splits past the row's context, or
//                  wholly masked, idle (their slots are never read).
//   split_combine: one thread per (row, head): ceil(nq*numHeads / WG)
//                  workgroups. A row needing more than maxSplits splits gets NaN.

struct Params {
  nq: u32,
  numHeads: u32,
  group: u32,       // numHeads / numKvHeads
  numKvHeads: u32,
  pageSize: u32,
  qRowStride: u32,
  qOffset: u32,
  maxSplits: u32,   // split entry points only
  scale: f32,
}

override WG: u32 = 32;
override KV_F16: bool = false;
override MASKED: bool = false;  // rowMask holds [A, B) per row
override HEAD_DIM: u32 = 64u;   // even, <= 4 * MAX_QUADS + 2
override SPLIT: u32 = 64u;      // keys per split, a multiple of BLOCK
const MAX_QUADS: u32 = 64u;
const BLOCK: u32 = 16u;
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> blockTables: array<u32>;
@group(0) @binding(3) var<storage, read> rowInfo: array<u32>;
@group(0) @binding(4) var<storage, read> pool: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> rowMask: array<u32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

// Per-invocation state: q*scale, the current split's (unnormalized) acc and
// the merged total, as quads plus the trailing pair (…T) when HEAD_DIM % 4 == 2.
var<private> qv: array<vec4<f32>, MAX_QUADS>;
var<private> acc: array<vec4<f32>, MAX_QUADS>;
var<private> tot: array<vec4<f32>, MAX_QUADS>;
var<private> qT: vec2<f32>;
var<private> accT: vec2<f32>;
var<private> totT: vec2<f32>;

fn nQuads() -> u32 { return HEAD_DIM / 4u; }
fn hasTail() -> bool { return HEAD_DIM % 4u == 2u; }
fn rowWords() -> u32 { if (KV_F16) { return HEAD_DIM / 2u; } return HEAD_DIM; }

// Quad i (elements 4i..4i+3) and the trailing pair of the K or V row starting at word w.
fn kvQuad(w: u32, i: u32) -> vec4<f32> {
  if (KV_F16) { return vec4<f32>(unpack2x16float(pool[w + 2u * i]), unpack2x16float(pool[w + 2u * i + 1u])); }
  let b = w + 4u * i;
  return bitcast<vec4<f32>>(vec4<u32>(pool[b], pool[b + 1u], pool[b + 2u], pool[b + 3u]));
}
fn kvTail(w: u32) -> vec2<f32> {
  let i = nQuads();
  if (KV_F16) { return unpack2x16float(pool[w + 2u * i]); }
  return bitcast<vec2<f32>>(vec2<u32>(pool[w + 4u * i], pool[w + 4u * i + 1u]));
}

// First word of key j's row for kv head g (kv = 0: K, 1: V) of the table at `table`.
fn rowWord(table: u32, j: u32, kv: u32, g: u32) -> u32 {
  let page = blockTables[table + j / p.pageSize];
  return kvRowStart(page, kv, g, j % p.pageSize, p.numKvHeads, p.pageSize, rowWords());
}

// One (row, head): kv head, table offset, keys 0..nk-1, masked keys [ma, mb).
struct Item { r: u32, h: u32, g: u32, table: u32, nk: u32, ma: u32, mb: u32 }

fn item(r: u32, h: u32) -> Item {
  _ = &rowMask; // bound in every variant for one binding list (see wrapper)
  var ma = 0u;
  var mb = 0u;
  if (MASKED) {
    ma = rowMask[2u * r];
    mb = rowMask[2u * r + 1u];
  }
  return Item(r, h, h / p.group, rowInfo[2u * r], rowInfo[2u * r + 1u] + 1u, ma, mb);
}

fn numSplits(it: Item) -> u32 { return (it.nk + SPLIT - 1u) / SPLIT; }
fn splitEnd(it: Item, s: u32) -> u32 { return min(it.nk, (s + 1u) * SPLIT); }

// Key j takes part in the softmax; always true when MASKED = false.
fn visible(it: Item, j: u32) -> bool { return !MASKED || j < it.ma || j >= it.mb; }
// Every key of [j0, j1) is masked; always false when MASKED = false.
fn allMasked(it: Item, j0: u32, j1: u32) -> bool { return MASKED && j0 >= it.ma && j1 <= it.mb; }

fn loadQ(it: Item) {
  let b = it.r * p.qRowStride + p.qOffset + it.h * HEAD_DIM;
  for (var i = 0u; i < nQuads(); i++) {
    qv[i] = vec4<f32>(q[b + 4u * i], q[b + 4u * i + 1u], q[b + 4u * i + 2u], q[b + 4u * i + 3u]) * p.scale;
  }
  if (hasTail()) { qT = vec2<f32>(q[b + HEAD_DIM - 2u], q[b + HEAD_DIM - 1u]) * p.scale; }
}

// Online softmax over the visible keys of [j0, j1): leaves the unnormalized
// acc/accT, returns (m, l); (NEG_BIG, 0) with acc = 0 if none is visible.
fn attendSplit(it: Item, j0: u32, j1: u32) -> vec2<f32> {
  var m = NEG_BIG;
  var l = 0.0;
  for (var i = 0u; i < nQuads(); i++) { acc[i] = vec4<f32>(0.0); }
  accT = vec2<f32>(0.0);
  var s: array<f32, BLOCK>;
  for (var b0 = j0; b0 < j1; b0 += BLOCK) {
    let cnt = min(BLOCK, j1 - b0);
    if (allMasked(it, b0, b0 + cnt)) { continue; }
    var mb = m;
    for (var j = 0u; j < cnt; j++) {
      if (!visible(it, b0 + j)) { continue; } // s[j] is then never read
      let w = rowWord(it.table, b0 + j, 0u, it.g);
      var sc = 0.0;
      for (var i = 0u; i < nQuads(); i++) { sc += dot(qv[i], kvQuad(w, i)); }
      if (hasTail()) { sc += dot(qT, kvTail(w)); }
      s[j] = sc;
      mb = max(mb, sc);
    }
    if (mb > m) {
      let corr = exp(m - mb);
      l *= corr;
      for (var i = 0u; i < nQuads(); i++) { acc[i] *= corr; }
      accT *= corr;
      m = mb;
    }
    for (var j = 0u; j < cnt; j++) {
      if (!visible(it, b0 + j)) { continue; } // adds nothing: no weight at all
      let w = rowWord(it.table, b0 + j, 1u, it.g);
      let e = exp(s[j] - m);
      l += e;
      for (var i = 0u; i < nQuads(); i++) { acc[i] += e * kvQuad(w, i); }
      if (hasTail()) { accT += e * kvTail(w); }
    }
  }
  return vec2<f32>(m, l);
}

// Merge factors of a split (m_s) into the running (M, L): returns (M', a, b).
fn mergeFactors(M: f32, ms: f32) -> vec3<f32> {
  let Mn = max(M, ms);
  return vec3<f32>(Mn, exp(M - Mn), exp(ms - Mn));
}

fn writeOut(it: Item, L: f32) {
  let inv = 1.0 / L;
  let b = (it.r * p.numHeads + it.h) * HEAD_DIM;
  for (var i = 0u; i < nQuads(); i++) {
    let o = tot[i] * inv;
    out[b + 4u * i] = o.x;
    out[b + 4u * i + 1u] = o.y;
    out[b + 4u * i + 2u] = o.z;
    out[b + 4u * i + 3u] = o.w;
  }
  if (hasTail()) {
    let o = totT * inv;
    out[b + HEAD_DIM - 2u] = o.x;
    out[b + HEAD_DIM - 1u] = o.y;
  }
}

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = linear(wid, nwg, lid);
  if (t >= p.nq * p.numHeads) { return; }
  let it = item(t / p.numHeads, t % p.numHeads);
  loadQ(it);
  var M = NEG_BIG;
  var L = 0.0;
  for (var s = 0u; s < numSplits(it); s++) {
    if (allMasked(it, s * SPLIT, splitEnd(it, s))) { continue; } // as split_combine does
    let ml = attendSplit(it, s * SPLIT, splitEnd(it, s));
    let f = mergeFactors(M, ml.x);
    L = L * f.y + ml.y * f.z;
    for (var i = 0u; i < nQuads(); i++) { tot[i] = tot[i] * f.y + acc[i] * f.z; }
    totT = totT * f.y + accT * f.z;
    M = f.x;
  }
  writeOut(it, L);
}

@compute @workgroup_size(WG)
fn split_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  _ = &out; // bound for a uniform binding list across entry points (see wrapper)
  let t = linear(wid, nwg, lid);
  if (t >= p.nq * p.numHeads * p.maxSplits) { return; }
  let s = t % p.maxSplits;
  let rh = t / p.maxSplits;
  let it = item(rh / p.numHeads, rh % p.numHeads);
  if (s >= numSplits(it) || allMasked(it, s * SPLIT, splitEnd(it, s))) { return; }
  loadQ(it);
  let ml = attendSplit(it, s * SPLIT, splitEnd(it, s));
  let b = t * (HEAD_DIM + 2u);
  partials[b] = ml.x;
  partials[b + 1u] = ml.y;
  for (var i = 0u; i < nQuads(); i++) {
    partials[b + 2u + 4u * i] = acc[i].x;
    partials[b + 3u + 4u * i] = acc[i].y;
    partials[b + 4u + 4u * i] = acc[i].z;
    partials[b + 5u + 4u * i] = acc[i].w;
  }
  if (hasTail()) {
    partials[b + HEAD_DIM] = accT.x;
    partials[b + HEAD_DIM + 1u] = accT.y;
  }
}

@compute @workgroup_size(WG)
fn split_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  _ = &q; _ = &blockTables; _ = &pool; // bound for a uniform binding list (see wrapper)
  let t = linear(wid, nwg, lid);
  if (t >= p.nq * p.numHeads) { return; }
  let it = item(t / p.numHeads, t % p.numHeads);
  var M = NEG_BIG;
  var L = 0.0;
  let n = numSplits(it);
  if (n > p.maxSplits) { L = bitcast<f32>(0x7fc00000u | (n & 0u)); } // too few splits reserved: NaN, loudly
  for (var s = 0u; s < min(n, p.maxSplits); s++) {
    if (allMasked(it, s * SPLIT, splitEnd(it, s))) { continue; } // split_partial skipped it
    let b = (t * p.maxSplits + s) * (HEAD_DIM + 2u);
    let f = mergeFactors(M, partials[b]);
    L = L * f.y + partials[b + 1u] * f.z;
    for (var i = 0u; i < nQuads(); i++) {
      let a = vec4<f32>(partials[b + 2u + 4u * i], partials[b + 3u + 4u * i], partials[b + 4u + 4u * i], partials[b + 5u + 4u * i]);
      tot[i] = tot[i] * f.y + a * f.z;
    }
    if (hasTail()) { totT = totT * f.y + vec2<f32>(partials[b + HEAD_DIM], partials[b + HEAD_DIM + 1u]) * f.z; }
    M = f.x;
  }
  writeOut(it, L);
}
