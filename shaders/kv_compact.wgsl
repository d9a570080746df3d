// In-place compaction of one sequence's paged K/V in one layer: for each kv
// head, the k kept tokens move to the sequence's first k slots, in order.
//
//   for kv head h, K=0|V=1 half kv, j < k (ascending):
//     src = indices[h*k + j]                       (ascending in j, src >= j)
//     pool[slot(j)][kv][h][:] = pool[slot(src)][kv][h][:]     (u32 words: bit exact)
//   slot(t): page = blockTable[t / pageSize], offset t % pageSize
//
// Pool layout (one GPUBuffer per layer, u32 words):
//   [page][K=0|V=1][kvHead][slot in page][rowWords], rowWords = headDim (f32)
//   or headDim/2 (f16 pairs, copied packed). Words are copied as u32, never
//   converted, so f32 NaN payloads and f16 pairs stay bit for bit.
//
// Why in place is safe here: each thread owns one word column (h, kv, w) and
// copies j = 0, 1, ..., k-1 in order. Because indices are strictly ascending,
// src = indices[j] >= j, and the thread has so far written only slots 0..j-1,
// so it never reads a slot it already overwrote. Different threads touch
// disjoint words (different head, half or word; the block table has distinct
// pages). No scratch buffer, no barriers, one dispatch per layer; the price
// is k sequential steps per thread (parallelism = 2*numKvHeads*rowWords).
// Pages past the pool (page >= numPages) are skipped, never out of bounds.
//
// Workgroup layout: WG threads, one per (kv half, head, word), word fastest
// (neighbouring threads touch neighbouring words).
// Dispatch: ceil(2 * numKvHeads * rowWords / WG) workgroups, 1-D (split over
// x/y by `grid()`).

struct Params {
  numKvHeads: u32,
  rowWords: u32,
  pageSize: u32,
  numPages: u32,
  k: u32,
  numTokens: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> blockTable: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> pool: array<u32>;

// Word w of token t (of the sequence), half kv, head h; 0xffffffff when its page is past the pool.
fn wordAddr(t: u32, kv: u32, h: u32, w: u32) -> u32 {
  let page = blockTable[t / p.pageSize];
  if (page >= p.numPages) { return 0xffffffffu; }
  return kvRowStart(page, kv, h, t % p.pageSize, p.numKvHeads, p.pageSize, p.rowWords) + w;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= 2u * p.numKvHeads * p.rowWords) { return; }
  let w = t % p.rowWords;
  let hk = t / p.rowWords;
  let h = hk % p.numKvHeads;
  let kv = hk / p.numKvHeads;
  let row = h * p.k;
  for (var j = 0u; j < p.k; j++) {
    let src = indices[row + j];
    if (src == j || src >= p.numTokens) { continue; }
    let srcAddr = wordAddr(src, kv, h, w);
    let dstAddr = wordAddr(j, kv, h, w);
    if (srcAddr == 0xffffffffu || dstAddr == 0xffffffffu) { continue; }
    pool[dstAddr] = pool[srcAddr];
  }
}
