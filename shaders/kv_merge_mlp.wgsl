// FastCache's learned compressor (CCM), one layer: groups of `factor` consecutive
// cached tokens become one new K row and one new V row, per kv head, through a
// 3-layer MLP (one for keys, one for values; shared by the heads):
//
//   x   = concat(row[start + g*factor + 0], ..., row[start + g*factor + factor-1])   (factor*headDim)
//   h1  = relu(W1 x + b1)       W1 [headDim][factor*headDim]
//   h2  = relu(W2 h1 + b2)      W2 [headDim][headDim]
//   out = W3 h2 + b3            W3 [headDim][headDim]
//
//   out[g][half][h][:] (f32, rowStride 2*numKvHeads*headDim: kv_write's src layout, K then V)
//
// Rows are read from the paged pool (f32, or f16 pairs unpacked) through the
// sequence's block table; the pool is only read (the merged rows overwrite
// slots other groups still read, so they go to `out` and kv_write puts them in
// place afterwards). Weights, f32, per layer: [K: W1 b1 W2 b2 W3 b3][V: same],
// PyTorch's Linear layout (row = output). Sums run in index order in f32.
//
// One workgroup per (group g, half, kv head h); WG = headDim threads, thread j
// owns output j of each layer. Dispatch: groups*2*numKvHeads workgroups,
// 1-D (split over x/y by `grid()`).

struct Params {
  numKvHeads: u32,
  rowWords: u32,
  pageSize: u32,
  numPages: u32,
  headDim: u32,
  factor: u32,
  groups: u32,
  start: u32,
}

override WG: u32 = 32;        // = headDim
override XN: u32 = 128;       // = factor * headDim
override KV_F16: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> blockTable: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> pool: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> xs: array<f32, XN>;
var<workgroup> h1: array<f32, WG>;
var<workgroup> h2: array<f32, WG>;

fn element(t: u32, half: u32, h: u32, d: u32) -> f32 {
  let page = blockTable[t / p.pageSize];
  if (page >= p.numPages) { return 0.0; }
  let row = kvRowStart(page, half, h, t % p.pageSize, p.numKvHeads, p.pageSize, p.rowWords);
  if (KV_F16 == 1u) {
    let pair = unpack2x16float(pool[row + d / 2u]);
    return select(pair.x, pair.y, (d & 1u) == 1u);
  }
  return bitcast<f32>(pool[row + d]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) j: u32) {
  let item = wid.x + wid.y * nwg.x;
  let live = item < p.groups * 2u * p.numKvHeads;   // uniform per workgroup
  let h = item % p.numKvHeads;
  let half = (item / p.numKvHeads) % 2u;
  let g = item / (2u * p.numKvHeads);
  let hd = p.headDim;
  let xn = p.factor * hd;
  if (live) {
    for (var i = j; i < xn; i += WG) {
      xs[i] = element(p.start + g * p.factor + i / hd, half, h, i % hd);
    }
  }
  workgroupBarrier();
  // this half's weights: W1 b1 W2 b2 W3 b3
  let base = half * (hd * xn + hd + 2u * (hd * hd + hd));
  let w2 = base + hd * xn + hd;
  let w3 = w2 + hd * hd + hd;
  if (live) {
    var a = weights[base + hd * xn + j];
    for (var i = 0u; i < xn; i++) { a += weights[base + j * xn + i] * xs[i]; }
    h1[j] = max(a, 0.0);
  }
  workgroupBarrier();
  if (live) {
    var a = weights[w2 + hd * hd + j];
    for (var i = 0u; i < hd; i++) { a += weights[w2 + j * hd + i] * h1[i]; }
    h2[j] = max(a, 0.0);
  }
  workgroupBarrier();
  if (live) {
    var a = weights[w3 + hd * hd + j];
    for (var i = 0u; i < hd; i++) { a += weights[w3 + j * hd + i] * h2[i]; }
    out[g * 2u * p.numKvHeads * hd + (half * p.numKvHeads + h) * hd + j] = a;
  }
}
