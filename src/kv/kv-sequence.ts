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

/** One line per sequence (the first `max`): tokens, pages, the last page's fill, offset and compressed flag. */
export function describeSequences(seqs: ReadonlyMap<SeqId, KvSequence>, pageSize: number, max: number): string[] {
  const lines: string[] = [];
  for (const [id, s] of [...seqs].slice(0, max)) {
    const fill = s.numSlots - (s.pages.length - 1) * pageSize;
    const extra = (s.positionOffset ? ` offset ${s.positionOffset}` : '') + (s.compressed ? ' compressed' : '');
    lines.push(`  ${String(id)}: ${s.numSlots} tokens, pages [${s.pages.join(' ')}]${s.pages.length ? ` (last page ${fill}/${pageSize})` : ''}${extra}`);
  }
  if (seqs.size > max) lines.push(`  …+${seqs.size - max} more`);
  return lines;
}
