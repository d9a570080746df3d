/**
 * KvSequence: the KV of one sequence as the KV manager owns it — the unit
 * that later moves between tiers (GPU pool → CPU → IndexedDB) whole.
 *
 *   pages          [p5 p1 p12]       block table, token order (pageSize 4)
 *   numSlots       10                slots holding K/V: pages hold ceil(10 / 4)
 *   positionOffset 6                 tokens a press evicted: the token in slot s
 *                                    (appended after compaction) has RoPE position s + 6
 *   compressed     true              a press rewrote the pages in place: they are
 *                                    private, never shared through the prefix cache
 *
 * Plain data; only KVCacheManager writes it.
 */
/** A sequence (request) id; any string or number the scheduler uses. */
export type SeqId = string | number;

export interface KvSequence {
  readonly pages: number[];
  numSlots: number;
  positionOffset: number;
  compressed: boolean;
}

export function emptySequence(): KvSequence {
  return { pages: [], numSlots: 0, positionOffset: 0, compressed: false };
}
