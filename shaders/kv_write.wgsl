// Scatter the K and V of n new tokens into the paged KV pool of one layer.
//
//   for token r < n, kv head h < numKvHeads, d < headDim:
//     slot = slots[r];  page = slot / pageSize;  off = slot % pageSize
//     pool[page][0][h][off][d] = src[r*rowStride + kOffset + h*headDim + d]   (K)
//     pool[page][1][h][off][d] = src[r*rowStride + vOffset + h*headDim + d]   (V)
//
// Pool layout (one GPUBuffer per layer, u32 words):
//   [page][K=0|V=1][kvHead][slot in page][rowWords]
//   f32 (KV_F16 = false): rowWords = headDim, each word an f32's bits;
//   f16 (KV_F16 = true):  rowWords = headDim/2, each word pack2x16float(d=2w, d=2w+1).
// A slot whose page is >= numPages is skipped (never written out of bounds).
//
// Workgroup layout: WG threads, one thread per (token, kv head, word); each
// thread writes one K word and one V word. No barriers, no shared memory.
// Dispatch: ceil(n * numKvHeads * rowWords / WG) workgroups, 1-D (split over
// x/y by `grid()`).

struct Params {
  n: u32,
  numKvHeads: u32,
  rowWords: u32,
  rowStride: u32,
  kOffset: u32,
  vOffset: u32,
  pageSize: u32,
  numPages: u32,
}

override WG: u32 = 64;
override KV_F16: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> pool: array<u32>;

fn word(base: u32, w: u32) -> u32 {
  if (KV_F16) {
    return pack2x16float(vec2<f32>(src[base + 2u * w], src[base + 2u * w + 1u]));
  }
  return bitcast<u32>(src[base + w]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= p.n * p.numKvHeads * p.rowWords) { return; }
  let w = t % p.rowWords;
  let rh = t / p.rowWords;
  let h = rh % p.numKvHeads;
  let r = rh / p.numKvHeads;

  let slot = slots[r];
  let page = slot / p.pageSize;
  if (page >= p.numPages) { return; }
  let off = slot % p.pageSize;

  var headDim = p.rowWords;
  if (KV_F16) { headDim = 2u * p.rowWords; }
  let srcRow = r * p.rowStride + h * headDim;
  let kDst = kvRowStart(page, 0u, h, off, p.numKvHeads, p.pageSize, p.rowWords) + w;
  let vDst = kvRowStart(page, 1u, h, off, p.numKvHeads, p.pageSize, p.rowWords) + w;
  pool[kDst] = word(srcRow + p.kOffset, w);
  pool[vDst] = word(srcRow + p.vOffset, w);
}
