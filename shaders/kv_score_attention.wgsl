// Attention scores of one sequence's cached keys from its observation window
// (SnapKV, TOVA, observed attention / H2O), f32 math.
//
//   N = numTokens, W = window; window query i < W sits at position
//   pos_i = N - W + i and sees keys 0..pos_i (causal). For query head h,
//   kv head g = h / group, key j:
//     s_ihj = scale * <q[i, h, :], K[page(j)][g][off(j)][:]>
//     a_ihj = exp(s_ihj - m_ih) / l_ih   (softmax over j <= pos_i; 0 for j > pos_i)
//     raw[g, j] = invScale * sum_{h in group g} sum_{i = qFirst..W-1} a_ihj
//   mean over the window: qFirst = 0, invScale = 1/(W*group); last query
//   (TOVA): qFirst = W-1, invScale = 1/group; sum (H2O): invScale = 1/group.
//     out[g, j] = keepScore                                   if j >= keepFrom
//               = max_{|j'-j| <= poolRadius, j' < keepFrom} raw[g, j']  otherwise
//   q of (i, h) at q[i*qRowStride + qOffset + h*HEAD_DIM + d].
//   page(j) = blockTable[j / pageSize], off(j) = j % pageSize; pool layout
//   (u32 words) [page][K=0|V=1][kvHead][slot][headDim], f32 bits or
//   pack2x16float pairs (KV_F16).
//
// scratch (f32): [0, W*numHeads*2): (m_ih, l_ih) at 2*(i*numHeads + h);
//                [rawBase, rawBase + numKvHeads*N): raw[g*N + j].
//
// Entry points, run in this order (1-D dispatches split over x/y by `grid()`,
// WG threads per workgroup, no barriers, no shared memory):
//   stats:  one thread per (i >= qFirst, h): ceil((W-qFirst)*numHeads / WG)
//           workgroups; online softmax max/sum over keys 0..pos_i.
//   scores: one thread per (g, j): ceil(numKvHeads*N / WG) workgroups; keeps
//           K_j in registers, sums a_ihj in order h ascending, then i ascending.
//   finish: one thread per (g, j): ceil(numKvHeads*N / WG) workgroups; pooling.
// Every entry point touches every binding, so one binding list serves all three.

struct Params {
  numTokens: u32,
  window: u32,
  qFirst: u32,
  numHeads: u32,
  group: u32,       // numHeads / numKvHeads
  numKvHeads: u32,
  pageSize: u32,
  qRowStride: u32,
  qOffset: u32,
  poolRadius: u32,
  keepFrom: u32,
  rawBase: u32,
  scale: f32,
  invScale: f32,
  keepScore: f32,
}

override WG: u32 = 64;
override KV_F16: bool = false;
override HEAD_DIM: u32 = 64u;   // even, <= MAX_DIM
const MAX_DIM: u32 = 256u;
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> blockTable: array<u32>;
@group(0) @binding(3) var<storage, read> pool: array<u32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<private> reg: array<f32, MAX_DIM>;   // q*scale (stats) or K_j (scores)

fn touchAll() { _ = &q; _ = &blockTable; _ = &pool; _ = &scratch; _ = &out; }

fn rowWords() -> u32 { if (KV_F16) { return HEAD_DIM / 2u; } return HEAD_DIM; }

fn keyWord(j: u32, g: u32) -> u32 {
  let page = blockTable[j / p.pageSize];
  return kvRowStart(page, 0u, g, j % p.pageSize, p.numKvHeads, p.pageSize, rowWords());
}

// <reg, K row at word w>
fn dotKey(w: u32) -> f32 {
  var s = 0.0;
  if (KV_F16) {
    for (var i = 0u; i < HEAD_DIM / 2u; i++) { s += dot(vec2<f32>(reg[2u * i], reg[2u * i + 1u]), unpack2x16float(pool[w + i])); }
  } else {
    for (var d = 0u; d < HEAD_DIM; d++) { s += reg[d] * bitcast<f32>(pool[w + d]); }
  }
  return s;
}

fn loadKey(w: u32) {
  if (KV_F16) {
    for (var i = 0u; i < HEAD_DIM / 2u; i++) { let v = unpack2x16float(pool[w + i]); reg[2u * i] = v.x; reg[2u * i + 1u] = v.y; }
  } else {
    for (var d = 0u; d < HEAD_DIM; d++) { reg[d] = bitcast<f32>(pool[w + d]); }
  }
}

fn qBase(i: u32, h: u32) -> u32 { return i * p.qRowStride + p.qOffset + h * HEAD_DIM; }

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * WG + lid; }

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= (p.window - p.qFirst) * p.numHeads) { return; }
  let i = p.qFirst + t / p.numHeads;
  let h = t % p.numHeads;
  let g = h / p.group;
  let b = qBase(i, h);
  for (var d = 0u; d < HEAD_DIM; d++) { reg[d] = q[b + d] * p.scale; }
  let nk = p.numTokens - p.window + i + 1u;
  var m = NEG_BIG;
  var l = 0.0;
  for (var j = 0u; j < nk; j++) {
    let s = dotKey(keyWord(j, g));
    if (s > m) { l = l * exp(m - s); m = s; }
    l += exp(s - m);
  }
  scratch[2u * (i * p.numHeads + h)] = m;
  scratch[2u * (i * p.numHeads + h) + 1u] = l;
}

@compute @workgroup_size(WG)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let g = t / p.numTokens;
  let j = t % p.numTokens;
  loadKey(keyWord(j, g));
  // Window queries at positions < j do not see key j.
  let iFirst = max(p.qFirst, select(0u, j + p.window - p.numTokens, j + p.window > p.numTokens));
  var acc = 0.0;
  for (var hh = 0u; hh < p.group; hh++) {
    let h = g * p.group + hh;
    for (var i = iFirst; i < p.window; i++) {
      let b = qBase(i, h);
      var s = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) { s += q[b + d] * p.scale * reg[d]; }
      let st = 2u * (i * p.numHeads + h);
      acc += exp(s - scratch[st]) / scratch[st + 1u];
    }
  }
  scratch[p.rawBase + t] = acc * p.invScale;
}

@compute @workgroup_size(WG)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  touchAll();
  let t = index(wid, nwg, lid);
  if (t >= p.numKvHeads * p.numTokens) { return; }
  let g = t / p.numTokens;
  let j = t % p.numTokens;
  if (j >= p.keepFrom) { out[t] = p.keepScore; return; }
  let lo = j - min(j, p.poolRadius);
  let hi = min(j + p.poolRadius, p.keepFrom - 1u);
  let row = p.rawBase + g * p.numTokens;
  var m = scratch[row + lo];
  for (var k = lo + 1u; k <= hi; k++) { m = max(m, scratch[row + k]); }
  out[t] = m;
}
