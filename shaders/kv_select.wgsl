// Exact top-k selection per kv head, indices written in ascending token order.
//
//   for each kv head h < numKvHeads, over the row s = scores[h*numTokens .. (h+1)*numTokens):
//     indices[h*k .. (h+1)*k) = the k tokens with the highest scores, ascending token index;
//     ties at the k-th score keep the lowest token indices.
//
// Order: scores are compared by their f32 bit pattern mapped to an unsigned
// key that is monotone in the float order (negative: ~bits, else bits|2^31),
// so the selection is exact and total: -0 < +0, and NaNs sort by bit pattern
// (positive NaNs above +inf, negative NaNs below -inf). Scores are read as
// u32 bits, never as floats (no denormal flushing or NaN canonicalisation).
//
// Algorithm (one workgroup per head, WG threads):
//   1. Radix select of the k-th largest key T, 8 bits per pass, most
//      significant first (4 passes): histogram of the next digit over the keys
//      that match the prefix chosen so far (workgroup atomics), then thread 0
//      walks the digits from 255 down to the one holding the k-th key.
//      Afterwards `need` = how many keys equal to T are kept (>= 1).
//   2. Ordered compaction: thread t owns the contiguous token range
//      [t*chunk, (t+1)*chunk); it counts its keys > T and == T, publishes them,
//      derives its output offset from the threads before it (keys > T plus
//      the ties they keep, capped at `need`), then writes its kept indices in
//      token order.
//   4 * 3 + 1 barriers per head whatever numTokens is (barriers are costly on
//   SwiftShader); 6 reads of the row.
//
// Per-head budgets (AdaKV) would replace p.k with budgets[h] from a u32
// buffer, with rows of indices strided by the largest budget; the algorithm
// is unchanged (need starts at budgets[h]).
//
// Dispatch: numKvHeads workgroups, 1-D (split over x/y by `grid()`).

struct Params {
  numKvHeads: u32,
  numTokens: u32,
  k: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scores: array<u32>;
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel: vec2<u32>;
var<workgroup> counts: array<vec2<u32>, WG>;

// Unsigned key, monotone in the f32 order of the bit pattern `b`.
fn orderKey(b: u32) -> u32 {
  if ((b >> 31u) == 1u) { return ~b; }
  return b | 0x80000000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let h = wid.x + wid.y * nwg.x;
  if (h >= p.numKvHeads) { return; }
  let n = p.numTokens;
  let row = h * n;

  // 1. Radix select of the k-th largest key.
  var prefix = 0u;
  var mask = 0u;
  var need = p.k;
  for (var digit = 0u; digit < 4u; digit++) {
    let shift = 24u - 8u * digit;
    for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = lid; i < n; i += WG) {
      let key = orderKey(scores[row + i]);
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var above = 0u;
      var d = 255u;
      loop {
        let c = atomicLoad(&hist[d]);
        if (above + c >= need || d == 0u) { break; }
        above += c;
        d -= 1u;
      }
      sel = vec2<u32>(prefix | (d << shift), need - above);
    }
    let s = workgroupUniformLoad(&sel);
    prefix = s.x;
    need = s.y;
    mask |= 255u << shift;
  }
  let T = prefix;

  // 2. Ordered compaction over contiguous per-thread ranges.
  let chunk = (n + WG - 1u) / WG;
  let lo = min(lid * chunk, n);
  let hi = min(lo + chunk, n);
  var gt = 0u;
  var eq = 0u;
  for (var i = lo; i < hi; i++) {
    let key = orderKey(scores[row + i]);
    if (key > T) { gt++; } else if (key == T) { eq++; }
  }
  counts[lid] = vec2<u32>(gt, eq);
  workgroupBarrier();
  var out = 0u;
  var ties = 0u;
  for (var t = 0u; t < lid; t++) {
    let c = counts[t];
    out += c.x;
    ties += c.y;
  }
  out += min(ties, need);
  let dst = h * p.k;
  for (var i = lo; i < hi; i++) {
    let key = orderKey(scores[row + i]);
    var keep = key > T;
    if (key == T) {
      keep = ties < need;
      ties++;
    }
    if (keep) {
      indices[dst + out] = i;
      out++;
    }
  }
}
