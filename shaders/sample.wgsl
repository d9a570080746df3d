// Token sampling: logits [rows, vocab] f32 (row-major) -> out[row] = one token id (u32).
// Row r reads its parameters from params[r] (packSamplingParams, sample-params.ts).
// src/gpu/kernels/sample.ref.ts is this file in TypeScript, operation for operation.
//
// Order. Tokens are ranked by logit through key(l): the f32 bits mapped to a
//   u32 that orders like the float (negative: ~bits, positive: bits | 2^31;
//   -0 counts as +0). Logits must be finite (|l| <= 1e38); mask with -1e30,
//   not -inf (WGSL may assume no infinities).
//
// Greedy (temperature <= 0): argmax by key, ties -> lowest index. Exact.
//
// Sampling:
//   weight   w_i = 2^((l_i - max) * scale), scale = log2(e)/T (from the CPU)
//            = exp((l_i - max)/T), evaluated with integer arithmetic only
//            (exp2_frac below), so it is bit-identical on every GPU and in TS.
//            w_i = 0 where l_i - max < cut = -64/scale (odds below 2^-64).
//   mass(c)  sum of w_i over tokens with key_i >= c, in the fixed order below.
//   top-k    t_k = the largest key c with count(key >= c) >= topK, i.e. the
//            k-th largest logit; ties keep all. topK = 0 or >= vocab: t_k = min.
//   top-p    Z_k = mass(t_k); t = the largest key c >= t_k with
//            mass(c) >= f32(topP * Z_k): the smallest set of highest-logit
//            tokens holding topP of the top-k mass. topP >= 1: t = t_k.
//   draw     u = rng(seed, step) in [0, 1) (24 bits); target = f32(u * mass(t));
//            the first token in index order whose running kept mass exceeds target.
//   mass(c) only falls as c rises (f32 addition is monotone), so each
//   threshold is unique; an 8-way search on keys finds it exactly: each pass
//   evaluates 7 candidates in one sweep and one reduction, 11 passes cover
//   32 bits. No sort.
//
// Summation order (what makes ref and kernel agree bit for bit, and a row's
// result independent of the other rows):
//   thread j owns tokens [j*C, min((j+1)*C, vocab)), C = ceil(vocab / WG);
//   p_j = sum of its kept w in index order; group g = threads g*16 .. g*16+15,
//   G_g = p_(16g) + ... + p_(16g+15) in order; mass = G_0 + ... + G_(WG/16-1) in order.
//   Draw: Gpre = G_0 + .. + G_(g-1), W_j = sum of p over the threads before j in its
//   group; running mass at token i of thread j = Gpre + (W_j + s_i), s_i = the
//   thread's own sum up to and including i. It rises monotonically from 0 to mass(t).
//
// Workgroup layout: one workgroup of WG threads per row; 2 barriers per
// reduction, 1 + 11 + 11 + 1 reductions at most. Workgroup memory 8.5 KB.
// Dispatch: `rows` workgroups (split over x/y by grid()); WG a multiple of 16.

struct Params { rows: u32, vocab: u32 }

struct RowParams {
  flags: u32,   // bit 0: greedy
  top_k: u32,   // 0 = off
  top_p: f32,   // >= 1 = off
  scale: f32,   // log2(e) / temperature
  cut: f32,     // -64 / scale
  seed: u32,
  step: u32,
  pad: u32,
}

override WG: u32 = 256;
const GS: u32 = 16u;       // threads per reduction group
const PASSES: u32 = 11u;   // 8-way search: 3 bits a pass

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<RowParams>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> part: array<vec4<u32>, 2 * WG>;        // per thread: 8 lanes
var<workgroup> grp: array<vec4<u32>, 2 * (WG / GS)>;  // per group: 8 lanes

var<private> lid: u32;
var<private> base: u32;  // row * vocab
var<private> b0: u32;    // this thread's tokens: [b0, b1)
var<private> b1: u32;

// ---------------------------------------------------------------- numerics

fn key(x: f32) -> u32 {
  var b = bitcast<u32>(x);
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

fn unkey(k: u32) -> f32 {
  if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }
  return bitcast<f32>(~k);
}

// floor(a * b / 2^32), exact, from 16-bit halves.
fn mulhi(a: u32, b: u32) -> u32 {
  let ah = a >> 16u;
  let al = a & 0xffffu;
  let bh = b >> 16u;
  let bl = b & 0xffffu;
  let hl = ah * bl;
  let lh = al * bh;
  let mid = ((al * bl) >> 16u) + (hl & 0xffffu) + (lh & 0xffffu);
  return ah * bh + (hl >> 16u) + (lh >> 16u) + (mid >> 16u);
}

// round(2^32 * 2^(-a/8)), a = 1..7
fn neg_eighths(a: u32) -> u32 {
  switch a {
    case 1u: { return 0xeac0c6e8u; }
    case 2u: { return 0xd744fccbu; }
    case 3u: { return 0xc5672a11u; }
    case 4u: { return 0xb504f334u; }
    case 5u: { return 0xa5fed6aau; }
    case 6u: { return 0x9837f052u; }
    default: { return 0x8b95c1e4u; }
  }
}

// r in [0, 2^24) -> M = 2^24 * 2^(-r / 2^24) in [2^23, 2^24], error < 1 unit.
// 2^(-r/2^24) = 2^(-a/8) * e^-t, a = top 3 bits, t = (low 21 bits / 2^24) ln 2 < 0.087;
// e^-t = 1 - t(1 - t/2(1 - t/3(1 - t/4(1 - t/5)))) in Q31 (truncation error < 6e-10).
fn exp2_frac(r: u32) -> u32 {
  let a = r >> 21u;
  let t = mulhi((r & 0x1fffffu) << 8u, 0xb17217f8u);  // Q32; 0xb17217f8 = ln 2 in Q32
  let u5 = 0x80000000u - (mulhi(t, 0x33333333u) >> 1u);
  let u4 = 0x80000000u - mulhi(u5, t >> 2u);
  let u3 = 0x80000000u - mulhi(u4, mulhi(t, 0x55555555u));
  let u2 = 0x80000000u - mulhi(u3, t >> 1u);
  var g = 0x80000000u - mulhi(u2, t);
  if (a != 0u) { g = mulhi(g, neg_eighths(a)); }
  return max((g + 64u) >> 7u, 0x800000u);
}

// w = 2^((l - m) * scale) as described in the header; m = the row max.
fn weight(l: f32, m: f32, scale: f32, cut: f32) -> f32 {
  let d = l - m;
  if (d < cut) { return 0.0; }
  let y = max(d * scale, -64.0);
  let q = u32(y * -16777216.0);  // -y in fixed point, 24 fraction bits, <= 2^30
  let n = q >> 24u;
  return bitcast<f32>(((126u - n) << 23u) + (exp2_frac(q & 0xffffffu) - 0x800000u));
}

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

// u in [0, 1), 24 bits, a pure function of (seed, step).
fn rng(seed: u32, step: u32) -> f32 {
  return f32(pcg(pcg(seed) ^ step) >> 8u) * 5.9604644775390625e-8;
}

// ---------------------------------------------------------------- reductions

// Sums 8 lanes over the workgroup in the order of the header; every thread
// gets the same totals.
fn reduce8(a0: vec4<f32>, a1: vec4<f32>) -> array<vec4<f32>, 2> {
  part[2u * lid] = bitcast<vec4<u32>>(a0);
  part[2u * lid + 1u] = bitcast<vec4<u32>>(a1);
  workgroupBarrier();
  if (lid < 2u * (WG / GS)) {
    let g = lid >> 1u;
    let h = lid & 1u;
    var s = vec4<f32>(0.0);
    for (var j = 0u; j < GS; j++) { s += bitcast<vec4<f32>>(part[2u * (g * GS + j) + h]); }
    grp[2u * g + h] = bitcast<vec4<u32>>(s);
  }
  workgroupBarrier();
  var t0 = vec4<f32>(0.0);
  var t1 = vec4<f32>(0.0);
  for (var g = 0u; g < WG / GS; g++) {
    t0 += bitcast<vec4<f32>>(grp[2u * g]);
    t1 += bitcast<vec4<f32>>(grp[2u * g + 1u]);
  }
  return array<vec4<f32>, 2>(t0, t1);
}

// (max key, its lowest index, min key) over the row.
fn row_extent() -> vec3<u32> {
  var e = vec3<u32>(0u, 0u, 0xffffffffu);
  for (var i = b0; i < b1; i++) {
    let k = key(logits[base + i]);
    if (k > e.x) { e.x = k; e.y = i; }
    e.z = min(e.z, k);
  }
  part[2u * lid] = vec4<u32>(e, 0u);
  workgroupBarrier();
  if (lid < WG / GS) {
    var g = part[2u * lid * GS].xyz;
    for (var j = 1u; j < GS; j++) {
      let v = part[2u * (lid * GS + j)];
      if (v.x > g.x) { g.x = v.x; g.y = v.y; }
      g.z = min(g.z, v.z);
    }
    grp[2u * lid] = vec4<u32>(g, 0u);
  }
  workgroupBarrier();
  var r = grp[0].xyz;
  for (var j = 1u; j < WG / GS; j++) {
    let v = grp[2u * j];
    if (v.x > r.x) { r.x = v.x; r.y = v.y; }
    r.z = min(r.z, v.z);
  }
  return r;
}

// floor(d * m / 8) without overflow
fn frac8(d: u32, m: u32) -> u32 {
  return (d >> 3u) * m + (((d & 7u) * m) >> 3u);
}

// The largest key c in [lo, hi) with pred(c), given pred(lo) true, pred(hi)
// false and pred monotone. count_mode: pred(c) = count(key >= c) >= need;
// otherwise pred(c) = mass(c) >= f32(top_p * mass(lo)).
fn search(lo0: u32, hi0: u32, count_mode: bool, need0: f32, m: f32, rp: RowParams) -> u32 {
  var lo = lo0;
  var hi = hi0;
  var need = need0;
  for (var it = 0u; it < PASSES; it++) {
    let d = hi - lo;
    // lane 0 = lo, lanes 1..7 = lo + floor(d*m/8), ascending, all < hi
    let c0 = vec4<u32>(lo, lo + frac8(d, 1u), lo + frac8(d, 2u), lo + frac8(d, 3u));
    let c1 = vec4<u32>(lo + frac8(d, 4u), lo + frac8(d, 5u), lo + frac8(d, 6u), lo + frac8(d, 7u));
    // mass(lo) is only needed in the first pass (Z_k); later only lanes 1..7 count
    let floor_key = select(c0.y, lo, it == 0u && !count_mode);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    if (d > 1u) {
      for (var i = b0; i < b1; i++) {
        let l = logits[base + i];
        let k = key(l);
        if (k >= floor_key) {
          var w = 1.0;
          if (!count_mode) { w = weight(l, m, rp.scale, rp.cut); }
          a0 += select(vec4<f32>(0.0), vec4<f32>(w), vec4<u32>(k) >= c0);
          a1 += select(vec4<f32>(0.0), vec4<f32>(w), vec4<u32>(k) >= c1);
        }
      }
    }
    let t = reduce8(a0, a1);
    if (d > 1u) {
      if (it == 0u && !count_mode) { need = rp.top_p * t[0].x; }
      let cs = array<u32, 8>(c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w);
      let ts = array<f32, 8>(t[0].x, t[0].y, t[0].z, t[0].w, t[1].x, t[1].y, t[1].z, t[1].w);
      var new_hi = hi;
      for (var j = 7u; j >= 1u; j--) {
        if (ts[j] >= need) { lo = max(lo, cs[j]); break; }
        new_hi = cs[j];
      }
      hi = new_hi;
    }
  }
  return lo;
}

// ---------------------------------------------------------------- entry point

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let rp = params[row];
  let vocab = p.vocab;
  let chunk = (vocab + WG - 1u) / WG;
  lid = li;
  base = row * vocab;
  b0 = min(li * chunk, vocab);
  b1 = min(b0 + chunk, vocab);

  let ext = row_extent();
  if ((rp.flags & 1u) != 0u) {
    if (li == 0u) { out[row] = ext.y; }
    return;
  }
  let m = unkey(ext.x);

  var t = ext.z;
  if (rp.top_k > 0u && rp.top_k < vocab) {
    t = search(ext.z, ext.x + 1u, true, f32(rp.top_k), m, rp);
  }
  if (rp.top_p < 1.0) {
    t = search(t, ext.x + 1u, false, 0.0, m, rp);
  }

  // draw: this thread's kept mass, then the running-mass interval it covers
  var s = 0.0;
  for (var i = b0; i < b1; i++) {
    let l = logits[base + i];
    if (key(l) >= t) { s += weight(l, m, rp.scale, rp.cut); }
  }
  part[2u * li] = vec4<u32>(bitcast<u32>(s), 0u, 0u, 0u);
  workgroupBarrier();
  if (li < WG / GS) {
    var gs = 0.0;
    for (var j = 0u; j < GS; j++) { gs += bitcast<f32>(part[2u * (li * GS + j)].x); }
    grp[2u * li] = vec4<u32>(bitcast<u32>(gs), 0u, 0u, 0u);
  }
  workgroupBarrier();
  let g = li / GS;
  var z = 0.0;
  var gpre = 0.0;
  for (var j = 0u; j < WG / GS; j++) {
    if (j == g) { gpre = z; }
    z += bitcast<f32>(grp[2u * j].x);
  }
  var wj = 0.0;
  for (var j = g * GS; j < li; j++) { wj += bitcast<f32>(part[2u * j].x); }
  let goal = rng(rp.seed, rp.step) * z;
  if (gpre + wj <= goal && goal < gpre + (wj + s)) {
    var run = wj;
    var pick = b0;
    for (var i = b0; i < b1; i++) {
      let l = logits[base + i];
      if (key(l) >= t) {
        run += weight(l, m, rp.scale, rp.cut);
        pick = i;
        if (gpre + run > goal) { break; }
      }
    }
    out[row] = pick;
  }
}
