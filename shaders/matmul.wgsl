// Matmul, x times a transposed weight (HF Linear layout, both row-major along k):
//   out[r, c] (+)= sum_i x[r, i] * w[c, i]  (+ bias[c])      x: [m, k] f32, w: [n, k], out: [m, n] f32
//
// The weight loaders come from a second file appended to this one by the
// TS wrapper: matmul_w_f32.wgsl (f32 weights) or matmul_w_f16.wgsl (f16
// packed two per u32). They declare binding 2 and define
//   w_row(c) -> u32                 base of weight row c for the vec4 path (k % 4 == 0)
//   w_vec(base, j) -> vec4<f32>     elements 4j..4j+3 of that row
//   w_row8(c) -> u32                base of weight row c for w_pair (k % 8 == 0)
//   w_pair(base, j) -> Pair         elements 8j..8j+7 of that row, as two vec4
//   w_row_any(c) / w_vec_any(base, j) / w_one_any(base, i): the same for any k
//
// Register tiling, no barriers, no workgroup memory (a barrier is very
// costly on SwiftShader): a thread owns TM rows x TN columns of `out` and
// keeps one vec4 accumulator per output. Entry points by tile (TM x TN):
// mm_1x4, mm_2x4, mm_4x4, mm_4x8 read x and w as vec4 (k % 4 == 0); mm_1x8
// is 1x4 stepping 8 along k with one w_pair per weight row (k % 8 == 0: f16
// weights then take one 16-byte load per 8 values, and the loop half the
// iterations, on the m = 1 decode path); mm_any
// is 1x4 with scalar loads for any k (k even for f16). The wrapper picks the
// tile from m alone, and mm_any for every m when k % 4 != 0.
//
// Batch invariance by construction: every output is computed by the same
// sequence of f32 operations whatever the entry point, m or place in a tile:
//   a = vec4(0); for j = 0, 1, .., k/4 - 1: a = a + x4[j] * w4[j]   (lane-wise, j ascending)
//   s = (a.x + a.y) + (a.z + a.w); then s = s + x[i] * w[i] for the k % 4 tail, i ascending;
//   then s = s + bias[c] (HAS_BIAS); then s = out[r, c] + s (ACCUMULATE).
// Rows past m and columns past n are clamped to the last valid one (read,
// computed, never stored), so rows of x beyond m are never read.
//
// On SwiftShader (its Subzero JIT) storage loads dominate, so what counts
// is loads per multiply-add: 1x4 is best at m = 1 (~0.4-0.6 GFLOP/s at
// 2048^2 here), 4x8 for m >= 8 (~0.6-1 GFLOP/s); tiles held in arrays or
// workgroup memory for x measured 2-5x slower. The JIT also runs vector
// shifts and integer divisions lane by lane, so the loaders keep both out of
// the inner loop where they can (left shifts as multiplies, bases in the unit
// of the load: w_row8); f16 weights halve the bytes, but unpack2x16float made
// them ~1.3x slower here, so the f16 loader decodes with integer ops
// (matmul_w_f16.wgsl).
// Real GPUs would want a k-split, coalesced variant (not written yet).
//
// Dispatch: workgroups (x, y, z) with x*y >= ceil(n / (TN*WG)) column tiles
// (split by `grid()` past 65535) and z = ceil(m / TM) row tiles; WG threads
// per workgroup, consecutive threads on consecutive column groups.

struct Params { m: u32, n: u32, k: u32 }

override WG: u32 = 64;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;   // vec4 path
@group(0) @binding(1) var<storage, read> xs: array<f32>;         // mm_any
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // bound even without bias (then never read)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Four accumulators: one row of x against four weight rows (columns of out).
struct Acc { a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32> }
// One 4-chunk of four weight rows.
struct W4 { c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32> }
// One 8-chunk of a weight row (w_pair), and of four rows: lo = chunk 2j, hi = chunk 2j + 1.
struct Pair { lo: vec4<f32>, hi: vec4<f32> }
struct W8 { lo: W4, hi: W4 }

fn mac(a: Acc, xv: vec4<f32>, w: W4) -> Acc {
  return Acc(a.a0 + xv * w.c0, a.a1 + xv * w.c1, a.a2 + xv * w.c2, a.a3 + xv * w.c3);
}

fn hsum(a: vec4<f32>) -> f32 { return (a.x + a.y) + (a.z + a.w); }

// Bias, accumulate and store one output; skipped past the edges.
fn put(r: u32, c: u32, dot: f32) {
  if (r >= p.m || c >= p.n) { return; }
  var s = dot;
  if (HAS_BIAS) { s = s + bias[c]; }
  let o = r * p.n + c;
  if (ACCUMULATE) { s = out[o] + s; }
  out[o] = s;
}

fn put4(r: u32, c0: u32, a: Acc) {
  put(r, c0, hsum(a.a0));
  put(r, c0 + 1u, hsum(a.a1));
  put(r, c0 + 2u, hsum(a.a2));
  put(r, c0 + 3u, hsum(a.a3));
}

// Column groups and row groups, clamped to the last valid column / row.
fn col(c: u32) -> u32 { return min(c, p.n - 1u); }
fn xrow(r: u32) -> u32 { return min(r, p.m - 1u) * (p.k / 4u); }

struct Bases { b0: u32, b1: u32, b2: u32, b3: u32 }
fn bases(c0: u32) -> Bases { return Bases(w_row(col(c0)), w_row(col(c0 + 1u)), w_row(col(c0 + 2u)), w_row(col(c0 + 3u))); }
fn bases8(c0: u32) -> Bases { return Bases(w_row8(col(c0)), w_row8(col(c0 + 1u)), w_row8(col(c0 + 2u)), w_row8(col(c0 + 3u))); }
fn load4(b: Bases, j: u32) -> W4 { return W4(w_vec(b.b0, j), w_vec(b.b1, j), w_vec(b.b2, j), w_vec(b.b3, j)); }
fn load8(b: Bases, j: u32) -> W8 {
  let p0 = w_pair(b.b0, j);
  let p1 = w_pair(b.b1, j);
  let p2 = w_pair(b.b2, j);
  let p3 = w_pair(b.b3, j);
  return W8(W4(p0.lo, p1.lo, p2.lo, p3.lo), W4(p0.hi, p1.hi, p2.hi, p3.hi));
}

fn first_col(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, tn: u32) -> u32 {
  return ((wid.x + wid.y * nwg.x) * WG + lid) * tn;
}

@compute @workgroup_size(WG)
fn mm_1x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 4u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z;
  let xb = xrow(r0);
  let wb = bases(c0);
  var a0: Acc;
  for (var j = 0u; j < p.k / 4u; j++) {
    a0 = mac(a0, x4[xb + j], load4(wb, j));
  }
  put4(r0, c0, a0);
}

// mm_1x4's operations in mm_1x4's order (chunk 2j, then 2j + 1), two chunks per iteration.
@compute @workgroup_size(WG)
fn mm_1x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 4u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z;
  let xb = xrow(r0);
  let wb = bases8(c0);
  var a0: Acc;
  for (var j = 0u; j < p.k / 8u; j++) {
    let w = load8(wb, j);
    a0 = mac(a0, x4[xb + 2u * j], w.lo);
    a0 = mac(a0, x4[xb + 2u * j + 1u], w.hi);
  }
  put4(r0, c0, a0);
}

@compute @workgroup_size(WG)
fn mm_2x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 4u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z * 2u;
  let xb0 = xrow(r0);
  let xb1 = xrow(r0 + 1u);
  let wb = bases(c0);
  var a0: Acc;
  var a1: Acc;
  for (var j = 0u; j < p.k / 4u; j++) {
    let w = load4(wb, j);
    a0 = mac(a0, x4[xb0 + j], w);
    a1 = mac(a1, x4[xb1 + j], w);
  }
  put4(r0, c0, a0);
  put4(r0 + 1u, c0, a1);
}

@compute @workgroup_size(WG)
fn mm_4x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 4u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z * 4u;
  let xb = vec4<u32>(xrow(r0), xrow(r0 + 1u), xrow(r0 + 2u), xrow(r0 + 3u));
  let wb = bases(c0);
  var a0: Acc;
  var a1: Acc;
  var a2: Acc;
  var a3: Acc;
  for (var j = 0u; j < p.k / 4u; j++) {
    let w = load4(wb, j);
    a0 = mac(a0, x4[xb.x + j], w);
    a1 = mac(a1, x4[xb.y + j], w);
    a2 = mac(a2, x4[xb.z + j], w);
    a3 = mac(a3, x4[xb.w + j], w);
  }
  put4(r0, c0, a0);
  put4(r0 + 1u, c0, a1);
  put4(r0 + 2u, c0, a2);
  put4(r0 + 3u, c0, a3);
}

@compute @workgroup_size(WG)
fn mm_4x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 8u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z * 4u;
  let xb = vec4<u32>(xrow(r0), xrow(r0 + 1u), xrow(r0 + 2u), xrow(r0 + 3u));
  let wa = bases(c0);
  let wb = bases(c0 + 4u);
  var a0: Acc;
  var a1: Acc;
  var a2: Acc;
  var a3: Acc;
  var b0: Acc;
  var b1: Acc;
  var b2: Acc;
  var b3: Acc;
  for (var j = 0u; j < p.k / 4u; j++) {
    let x0 = x4[xb.x + j];
    let x1 = x4[xb.y + j];
    let x2 = x4[xb.z + j];
    let x3 = x4[xb.w + j];
    let u = load4(wa, j);
    a0 = mac(a0, x0, u);
    a1 = mac(a1, x1, u);
    a2 = mac(a2, x2, u);
    a3 = mac(a3, x3, u);
    let v = load4(wb, j);
    b0 = mac(b0, x0, v);
    b1 = mac(b1, x1, v);
    b2 = mac(b2, x2, v);
    b3 = mac(b3, x3, v);
  }
  put4(r0, c0, a0);
  put4(r0 + 1u, c0, a1);
  put4(r0 + 2u, c0, a2);
  put4(r0 + 3u, c0, a3);
  put4(r0, c0 + 4u, b0);
  put4(r0 + 1u, c0 + 4u, b1);
  put4(r0 + 2u, c0 + 4u, b2);
  put4(r0 + 3u, c0 + 4u, b3);
}

// Any k: 1x4 tile, scalar loads, then the k % 4 tail one element at a time.
@compute @workgroup_size(WG)
fn mm_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let c0 = first_col(wid, nwg, lid, 4u);
  if (c0 >= p.n) { return; }
  let r0 = wid.z;
  let xb = min(r0, p.m - 1u) * p.k;
  let wb = Bases(w_row_any(col(c0)), w_row_any(col(c0 + 1u)), w_row_any(col(c0 + 2u)), w_row_any(col(c0 + 3u)));
  let k4 = p.k / 4u;
  var a: Acc;
  for (var j = 0u; j < k4; j++) {
    let o = xb + 4u * j;
    let xv = vec4<f32>(xs[o], xs[o + 1u], xs[o + 2u], xs[o + 3u]);
    a = mac(a, xv, W4(w_vec_any(wb.b0, j), w_vec_any(wb.b1, j), w_vec_any(wb.b2, j), w_vec_any(wb.b3, j)));
  }
  var s = vec4<f32>(hsum(a.a0), hsum(a.a1), hsum(a.a2), hsum(a.a3));
  for (var i = 4u * k4; i < p.k; i++) {
    let xi = xs[xb + i];
    s = s + xi * vec4<f32>(w_one_any(wb.b0, i), w_one_any(wb.b1, i), w_one_any(wb.b2, i), w_one_any(wb.b3, i));
  }
  put(r0, c0, s.x);
  put(r0, c0 + 1u, s.y);
  put(r0, c0 + 2u, s.z);
  put(r0, c0 + 3u, s.w);
}
