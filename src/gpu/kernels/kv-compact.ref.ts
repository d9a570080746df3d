import { type KvGeometry, kvRowWords } from '../kv-layout.ts';

/** Word index of word w of (page, K=0|V=1, head, offset) in one layer's pool words `[page][kv][head][offset][rowWords]`. */
export function kvWordIndex(g: KvGeometry, page: number, kv: 0 | 1, head: number, offset: number, w: number): number {
  return (((page * 2 + kv) * g.numKvHeads + head) * g.pageSize + offset) * kvRowWords(g) + w;
}

/**
 * Reference kv_compact on the raw u32 words of one layer's pool: for each
 * head, slot j of the sequence gets the words token indices[h*k + j] had
 * before the call (gathered from a snapshot, so no in-place hazard here).
 * Returns a new array; other words unchanged.
 */
export function kvCompactRef(words: Uint32Array, g: KvGeometry, blockTable: ArrayLike<number>, indices: Uint32Array, k: number): Uint32Array {
  const out = words.slice();
  const rowWords = kvRowWords(g);
  const at = (t: number, kv: 0 | 1, h: number) => kvWordIndex(g, blockTable[Math.floor(t / g.pageSize)], kv, h, t % g.pageSize, 0);
  for (let h = 0; h < g.numKvHeads; h++) {
    for (let j = 0; j < k; j++) {
      const src = indices[h * k + j];
      for (const kv of [0, 1] as const) {
        out.set(words.subarray(at(src, kv, h), at(src, kv, h) + rowWords), at(j, kv, h));
      }
    }
  }
  return out;
}
