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
//            = exp((l_i - max)/T) within 7e-8 relative, evaluated with integer
//            arithmetic only (exp2_frac), so it is bit-identical on every GPU
//            and in TS (WGSL's exp is not). w_i = 0 where l_i - max < cut =
//            -64/scale (odds below 2^-64).
//   mass(c)  sum of w_i over tokens with key_i >= c, in the fixed order below.
//   top-k    t_k = the largest key c with count(key >= c) >= topK: the k-th
//            largest logit; ties keep all. topK = 0 or >= vocab: t_k = min key.
//   top-p    Z_k = mass(t_k); t = the largest key c >= t_k with
//            mass(c) >= f32(topP * Z_k) and mass(c) > 0: the smallest set of
//            highest-logit tokens holding topP of the top-k mass. topP >= 1: t = t_k.
//   draw     u = rng(seed, step) in [0, 1), 24 bits; goal = f32(u * mass(t));
//            the first token in index order whose running kept mass (below)
//            exceeds goal.
//   Thresholds are taken on logit keys, not on w: w is a monotone function of
//   the logit, so the kept sets are the same except where two distinct logits
//   round to one w (then the lower logit is cut, where a threshold on w would
//   keep both); the searches need no exp for top-k this way.
//   count(c) and mass(c) only fall as c rises (f32 addition is monotone), so
//   each threshold is unique, and it is a key present in the row. search()
//   finds it exactly with an 8-way search on the keys; no sort.
//
// Summation order (what makes ref and kernel agree bit for bit, and a row's
// result independent of the other rows):
//   thread j owns tokens [j*C, min((j+1)*C, vocab)), C = ceil(vocab / WG);
//   p_j = sum of its kept w in index order; group g = threads 16g .. 16g+15,
//   G_g = p_(16g) + ... + p_(16g+15) in order; mass = G_0 + G_1 + ... in order.
//   Draw: Gpre = G_0 + ... + G_(g-1) for thread j's group g, W_j = the sum of p
//   over the threads before j in its group; the running mass at token i of
//   thread j is Gpre + (W_j + s_i), s_i = the thread's own sum up to and
//   including i. It rises monotonically from 0 to mass(t).
//
// Workgroup layout: one workgroup of WG threads per row (WG = 16..256 picked
// from the vocab by sampleWorkgroupSize, a multiple of 16); each reduction is
// per-thread sums, 16-thread group sums, then the group sums, with 2-3 barriers.
// Reductions: 1 (max/argmax/min) + a few per search (11 at most) + 1 (draw).
// Greedy rows stop after the first.
// Workgroup memory: 34*WG + 48 bytes (8.6 KB at WG = 256).
// Dispatch: `rows` workgroups (split over x/y by grid()).

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
const PASSES: u32 = 12u;   // 8-way search, 3 bits a pass: 11 always suffice for 32-bit keys
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<RowParams>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> part: array<vec4<u32>, 2 * WG>;        // per thread: 8 lanes
var<workgroup> grp: array<vec4<u32>, 2 * (WG / GS)>;  // per group: 8 lanes
var<workgroup> lane_min: array<atomic<u32>, 8>;       // search: smallest key >= each lane
var<workgroup> shared_ext: vec4<u32>;                 // thread 0 -> all (uniform)

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

// Stages 1 and 2 of an 8-lane sum: thread partials, then group sums in grp.
fn reduce_groups(a0: vec4<f32>, a1: vec4<f32>) {
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
}

// Stage 3: the 8 totals, groups summed in order.
fn group_totals() -> array<f32, 8> {
  var t0 = vec4<f32>(0.0);
  var t1 = vec4<f32>(0.0);
  for (var g = 0u; g < WG / GS; g++) {
    t0 += bitcast<vec4<f32>>(grp[2u * g]);
    t1 += bitcast<vec4<f32>>(grp[2u * g + 1u]);
  }
  return array<f32, 8>(t0.x, t0.y, t0.z, t0.w, t1.x, t1.y, t1.z, t1.w);
}

// (max key, its lowest index, min key) over the row, uniform across the workgroup.
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
  if (lid == 0u) {
    var r = grp[0].xyz;
    for (var j = 1u; j < WG / GS; j++) {
      let v = grp[2u * j];
      if (v.x > r.x) { r.x = v.x; r.y = v.y; }
      r.z = min(r.z, v.z);
    }
    shared_ext = vec4<u32>(r, 0u);
  }
  return workgroupUniformLoad(&shared_ext).xyz;
}

// floor(e * m / 8) without overflow
fn frac8(e: u32, m: u32) -> u32 {
  return (e >> 3u) * m + (((e & 7u) * m) >> 3u);
}

// The largest key c in [lo, hi) with pred(c), given pred(lo) true, pred(hi)
// false, pred monotone and lo a key present in the row.
//   count_mode: pred(c) = count(key >= c) >= top_k
//   otherwise:  pred(c) = mass(c) >= f32(top_p * mass(lo)) and mass(c) > 0
// A pass tests lanes c_m = lo + 1 + floor((hi - lo - 1) * m / 8), m = 0..7, in
// one sweep (lane 0 holds mass(lo) instead in the first mass pass), then
// moves lo to the smallest key present >= the highest true lane and hi to the
// next lane. The answer is a present key, so the search ends as soon as no
// key lies between lo and hi: a few passes, 11 at most.
fn search(lo0: u32, hi0: u32, count_mode: bool, m: f32, rp: RowParams) -> u32 {
  var lo = lo0;
  var hi = hi0;
  var need = f32(rp.top_k);
  for (var it = 0u; it < PASSES; it++) {
    if (hi - lo <= 1u) { break; }
    let first = it == 0u && !count_mode;
    let e = hi - lo - 1u;
    let c0 = vec4<u32>(select(lo + 1u, lo, first), lo + 1u + frac8(e, 1u), lo + 1u + frac8(e, 2u), lo + 1u + frac8(e, 3u));
    let c1 = vec4<u32>(lo + 1u + frac8(e, 4u), lo + 1u + frac8(e, 5u), lo + 1u + frac8(e, 6u), lo + 1u + frac8(e, 7u));
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var n0 = vec4<u32>(NONE);
    var n1 = vec4<u32>(NONE);
    for (var i = b0; i < b1; i++) {
      let l = logits[base + i];
      let k = key(l);
      if (k >= c0.x) {
        var w = 1.0;
        if (!count_mode) { w = weight(l, m, rp.scale, rp.cut); }
        let in0 = vec4<u32>(k) >= c0;
        let in1 = vec4<u32>(k) >= c1;
        a0 += select(vec4<f32>(0.0), vec4<f32>(w), in0);
        a1 += select(vec4<f32>(0.0), vec4<f32>(w), in1);
        n0 = min(n0, select(vec4<u32>(NONE), vec4<u32>(k), in0));
        n1 = min(n1, select(vec4<u32>(NONE), vec4<u32>(k), in1));
      }
    }
    if (n0.x != NONE) {
      for (var j = 0u; j < 4u; j++) {
        if (n0[j] != NONE) { atomicMin(&lane_min[j], n0[j]); }
        if (n1[j] != NONE) { atomicMin(&lane_min[4u + j], n1[j]); }
      }
    }
    reduce_groups(a0, a1);
    if (lid == 0u) {
      let ts = group_totals();
      if (first) { need = rp.top_p * ts[0]; }
      let cs = array<u32, 8>(c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w);
      var new_lo = lo;
      var new_hi = hi;
      for (var j = 7u; j >= select(0u, 1u, first) && j < 8u; j--) {
        if (ts[j] >= need && ts[j] > 0.0) { new_lo = atomicLoad(&lane_min[j]); break; }
        new_hi = cs[j];
      }
      for (var j = 0u; j < 8u; j++) { atomicStore(&lane_min[j], NONE); }
      shared_ext = vec4<u32>(new_lo, new_hi, 0u, 0u);
    }
    let v = workgroupUniformLoad(&shared_ext);
    lo = v.x;
    hi = v.y;
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

  if (li == 0u) {
    for (var j = 0u; j < 8u; j++) { atomicStore(&lane_min[j], NONE); }
  }
  let ext = row_extent();
  if ((rp.flags & 1u) != 0u) {
    if (li == 0u) { out[row] = ext.y; }
    return;
  }
  let m = unkey(ext.x);

  var t = ext.z;
  if (rp.top_k > 0u && rp.top_k < vocab) {
    t = search(ext.z, ext.x + 1u, true, m, rp);
  }
  if (rp.top_p < 1.0) {
    t = search(t, ext.x + 1u, false, m, rp);
  }

  // draw: this thread's kept mass, then the running-mass interval it covers
  var s = 0.0;
  for (var i = b0; i < b1; i++) {
    let l = logits[base + i];
    if (key(l) >= t) { s += weight(l, m, rp.scale, rp.cut); }
  }
  reduce_groups(vec4<f32>(s, 0.0, 0.0, 0.0), vec4<f32>(0.0));
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
