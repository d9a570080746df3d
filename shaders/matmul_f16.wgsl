// Matmul with f16 weights (packed two per u32, element 2i in the low half,
// pairs along k) in HF Linear layout, f32 activations and accumulation:
//   out[r, c] (+)= sum_k x[r, k] * w[c, k]  (+ bias[c])        x: [m, k], w: [n, k], out: [m, n]
//
// Register tiling, no barriers, no shared memory (barriers are very costly
// on SwiftShader): each thread owns a TM x TN tile of outputs, rows
// r0..r0+TM-1 and columns c0..c0+TN-1, and keeps TM*TN vec4 accumulators.
//
// Batch invariance by construction: every output is the same sequence of
// f32 operations whatever m, the tile shape or its place in the tile:
//   acc = 0; for each 4-chunk c = 0,1,..,k/4-1 (ascending): acc = acc + x4 * w4   (lane-wise)
//   s = (acc.x + acc.y) + (acc.z + acc.w); then s = s + x[i] * w[i] for the k % 4 tail;
//   then s = s + bias[c] (HAS_BIAS); then out = out + s (ACCUMULATE).
// Rows past m and columns past n are clamped to the last valid one (read,
// computed, never stored), so x rows beyond m are never read.
//
// Same tiling and the same order of operations as matmul.wgsl (a 4-chunk is
// two u32 words, unpacked with unpack2x16float); k must be even.
// Entry points: `main` reads x as scalars and w as u32 words (any even k);
// `main_vec2` reads x as vec4 and w as vec2<u32> (k % 4 == 0 only; same
// arithmetic, wider loads).
//
// Dispatch: x*y = ceil(n / (TN*WG)) column tiles (split by `grid()`),
// z = ceil(m / TM) row tiles; WG threads per workgroup along n.

struct Params { m: u32, n: u32, k: u32 }

override WG: u32 = 64;
override TM: u32 = 1;   // rows per thread, 1..MAX_TM
override TN: u32 = 4;   // columns per thread, 1..MAX_TN
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

const MAX_TM: u32 = 8u;
const MAX_TN: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w2: array<vec2<u32>>;

struct Tile { r0: u32, c0: u32, rows: array<u32, MAX_TM>, cols: array<u32, MAX_TN> }

fn tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Tile {
  var t: Tile;
  t.r0 = wid.z * TM;
  t.c0 = ((wid.x + wid.y * nwg.x) * WG + lid) * TN;
  for (var i = 0u; i < TM; i++) { t.rows[i] = min(t.r0 + i, p.m - 1u); }
  for (var j = 0u; j < TN; j++) { t.cols[j] = min(t.c0 + j, p.n - 1u); }
  return t;
}

// bias, accumulate and store one finished dot product.
fn store(r: u32, c: u32, dot: f32) {
  var s = dot;
  if (HAS_BIAS) { s = s + bias[c]; }
  let o = r * p.n + c;
  if (ACCUMULATE) { s = out[o] + s; }
  out[o] = s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = tile(wid, nwg, lid);
  if (t.c0 >= p.n) { return; }
  let k4 = p.k / 4u;
  var acc: array<array<vec4<f32>, MAX_TN>, MAX_TM>;
  for (var c = 0u; c < k4; c++) {
    var xv: array<vec4<f32>, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
      let o = t.rows[i] * p.k + 4u * c;
      xv[i] = vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
    }
    for (var j = 0u; j < TN; j++) {
      let o = t.cols[j] * (p.k / 2u) + 2u * c;
      let wv = vec4<f32>(unpack2x16float(w[o]), unpack2x16float(w[o + 1u]));
      for (var i = 0u; i < TM; i++) { acc[i][j] = acc[i][j] + xv[i] * wv; }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let r = t.r0 + i;
    if (r >= p.m) { break; }
    for (var j = 0u; j < TN; j++) {
      let c = t.c0 + j;
      if (c >= p.n) { break; }
      let a = acc[i][j];
      var s = (a.x + a.y) + (a.z + a.w);
      if (k4 * 4u < p.k) { // k % 4 == 2: one word left
        let kk = k4 * 4u;
        let wt = unpack2x16float(w[c * (p.k / 2u) + 2u * k4]);
        s = s + x[r * p.k + kk] * wt.x;
        s = s + x[r * p.k + kk + 1u] * wt.y;
      }
      store(r, c, s);
    }
  }
}

@compute @workgroup_size(WG)
fn main_vec2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let t = tile(wid, nwg, lid);
  if (t.c0 >= p.n) { return; }
  let k4 = p.k / 4u;
  var acc: array<array<vec4<f32>, MAX_TN>, MAX_TM>;
  for (var c = 0u; c < k4; c++) {
    var xv: array<vec4<f32>, MAX_TM>;
    for (var i = 0u; i < TM; i++) { xv[i] = x4[t.rows[i] * k4 + c]; }
    for (var j = 0u; j < TN; j++) {
      let wp = w2[t.cols[j] * k4 + c];
      let wv = vec4<f32>(unpack2x16float(wp.x), unpack2x16float(wp.y));
      for (var i = 0u; i < TM; i++) { acc[i][j] = acc[i][j] + xv[i] * wv; }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let r = t.r0 + i;
    if (r >= p.m) { break; }
    for (var j = 0u; j < TN; j++) {
      let c = t.c0 + j;
      if (c >= p.n) { break; }
      let a = acc[i][j];
      store(r, c, (a.x + a.y) + (a.z + a.w));
    }
  }
}
