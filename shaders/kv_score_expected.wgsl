// Expected-attention scores (kvpress ExpectedAttentionPress, diagonal
// covariance), f32 math.
//
//   Window queries q[i, h, :], i < W, model the future queries of head h as
//   Gaussian with per-dimension mean mu_hd and variance var_hd (population,
//   over the W rows; the covariance is taken diagonal). For q ~ N(mu, Sigma),
//   E[exp(scale <q, k>)] = exp(scale <mu, k> + scale^2 k^T Sigma k / 2), so
//     e_hj = scale * <mu_h, K_j> + 0.5 * scale^2 * sum_d var_hd * K_jd^2
//     a_hj = exp(e_hj - m_h) / l_h            (softmax over all j < N)
//     out[g, j] = keepScore                                   if j < sinks
//               = (1/group) sum_{h in g} a_hj * ||V_j||        otherwise
//   q of (i, h) at q[i*qRowStride + qOffset + h*HEAD_DIM + d]; page(j) =
//   blockTable[j / pageSize]; pool [page][K=0|V=1][kvHead][slot][headDim] as
//   f32 bits or pack2x16float pairs (KV_F16).
//
// scratch (f32): [0, numHeads*2*HEAD_DIM): mu_h at h*2D, var_h at h*2D + D;
//   [logitBase, + numHeads*N): e_hj at h*N + j; [normBase, + 2*numHeads): (m_h, l_h).
//
// Entry points, in order (1-D dispatches split over x/y by `grid()`, WG
// threads per workgroup, no barriers):
//   qstats: one thread per (h, d): ceil(numHeads*HEAD_DIM / WG) workgroups.
//   logits: one thread per (g, j): ceil(numKvHeads*N / WG); K_j in registers.
//   norm:   one thread per h: ceil(numHeads / WG); max then sum over j, ascending.
//   scores: one thread per (g, j): ceil(numKvHeads*N / WG).
// Every entry point touches every binding, so one binding list serves all four.

struct Params {
  numTokens: u32,
  window: u32,
  numHeads: u32,
  group: u32,
  numKvHeads: u32,
  pageSize: u32,
  qRowStride: u32,
  qOffset: u32,
  sinks: u32,
  logitBase: u32,
  normBase: u32,
  scale: f32,
  keepScore: f32,
}

override WG: u32 = 64;
override KV_F16: bool = false;
override HEAD_DIM: u32 = 64u;   // even, <= MAX_DIM
const MAX_DIM: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> blockTable: array<u32>;
@group(0) @binding(3) var<storage, read> pool: array<u32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<private> reg: array<f32, MAX_DIM>;

fn touchAll() { _ = &q; _ = &blockTable; _ = &pool; _ = &scratch; _ = &out; }

fn rowWords() -> u32 { if (KV_F16) { return HEAD_DIM / 2u; } return HEAD_DIM; }

// First word of token j's K (kv = 0) or V (kv = 1) row of kv head g.
fn rowWord(j: u32, kv: u32, g: u32) -> u32 {
  let page = blockTable[j / p.pageSize];
  return kvRowStart(page, kv, g, j % p.pageSize, p.numKvHeads, p.pageSize, rowWords());
}

fn loadRow(w: u32) {
  if (KV_F16) {
    for (var i = 0u; i < HEAD_DIM / 2u; i++) { let v = unpack2x16float(pool[w + i]); reg[2u * i] = v.x; reg[2u * i + 1u] = v.y; }
  } else {
    for (var d = 0u; d < HEAD_DIM; d++) { reg[d] = bitcast<f32>(pool[w + d]); }
  }
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * WG + lid; }

@compute @workgroup_size(WG)
fn qstats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= p.numHeads * HEAD_DIM) { return; }
  let h = t / HEAD_DIM;
  let d = t % HEAD_DIM;
  let inv = 1.0 / f32(p.window);
  var mean = 0.0;
  for (var i = 0u; i < p.window; i++) { mean += q[i * p.qRowStride + p.qOffset + t]; }
  mean *= inv;
  var v = 0.0;
  for (var i = 0u; i < p.window; i++) { let x = q[i * p.qRowStride + p.qOffset + t] - mean; v += x * x; }
  scratch[h * 2u * HEAD_DIM + d] = mean;
  scratch[h * 2u * HEAD_DIM + HEAD_DIM + d] = v * inv;
}

@compute @workgroup_size(WG)
fn logits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let g = t / p.numTokens;
  let j = t % p.numTokens;
  loadRow(rowWord(j, 0u, g));
  for (var hh = 0u; hh < p.group; hh++) {
    let h = g * p.group + hh;
    let b = h * 2u * HEAD_DIM;
    var lin = 0.0;
    var quad = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
      lin += scratch[b + d] * reg[d];
      quad += scratch[b + HEAD_DIM + d] * reg[d] * reg[d];
    }
    scratch[p.logitBase + h * p.numTokens + j] = p.scale * lin + 0.5 * p.scale * p.scale * quad;
  }
}

@compute @workgroup_size(WG)
fn norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let h = index(wid, nwg, lid);
  if (h >= p.numHeads) { return; }
  let row = p.logitBase + h * p.numTokens;
  var m = scratch[row];
  for (var j = 1u; j < p.numTokens; j++) { m = max(m, scratch[row + j]); }
  var l = 0.0;
  for (var j = 0u; j < p.numTokens; j++) { l += exp(scratch[row + j] - m); }
  scratch[p.normBase + 2u * h] = m;
  scratch[p.normBase + 2u * h + 1u] = l;
}

@compute @workgroup_size(WG)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let g = t / p.numTokens;
  let j = t % p.numTokens;
  if (j < p.sinks) { out[t] = p.keepScore; return; }
  var a = 0.0;
  for (var hh = 0u; hh < p.group; hh++) {
    let h = g * p.group + hh;
    a += exp(scratch[p.logitBase + h * p.numTokens + j] - scratch[p.normBase + 2u * h]) / scratch[p.normBase + 2u * h + 1u];
  }
  loadRow(rowWord(j, 1u, g));
  var vv = 0.0;
  for (var d = 0u; d < HEAD_DIM; d++) { vv += reg[d] * reg[d]; }
  out[t] = a / f32(p.group) * sqrt(vv);
}
