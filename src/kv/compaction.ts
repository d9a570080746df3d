import type { CommandRecorder } from '../gpu/recorder.ts';
import { storageBuffer, writeBuffer } from '../gpu/buffers.ts';
import { encodeKvSelect } from '../gpu/kernels/kv-select.ts';
import { encodeKvCompact } from '../gpu/kernels/kv-compact.ts';
import type { KvPool } from './kv-pool.ts';
import type { SeqId } from './kv-cache-manager.ts';

/**
 * Compaction: after a press has scored a sequence's cached tokens, keep the
 * best `keep` per kv head and every layer, move them to the front of the
 * sequence's pages, and give the pages no longer needed back to the pool.
 *
 *   before (pageSize 4, 10 tokens, keep 5)      after
 *   table [p5 | p1 | p12]                        table [p5 | p1]        p12 freed
 *   head h: slots 0..9, kept {0,3,4,7,9}         head h: slots 0..4 = tokens 0,3,4,7,9
 *
 * Each kv head keeps its own tokens (slot j of head 0 and of head 1 may hold
 * different tokens); pages hold all heads, so every head keeps the same count.
 *
 * Positions: RoPE was applied before K was cached, so a kept key carries its
 * original position and attention over the compacted slots is unchanged for
 * them. After compaction the sequence has `keep` cached slots but its next
 * token's RoPE position is still the original length: the engine tracks
 * `positionOffset` (returned) and uses position = numCachedTokens + offset
 * for RoPE, while the paged attention's key count stays the cache length.
 *
 * Budgets: `keep` is uniform over heads and layers. Per-layer budgets
 * (PyramidKV) would pass one keep per layer to encodeKvSelect/encodeKvCompact;
 * the block table is shared by all layers, so it could shrink only to
 * ceil(max keep / pageSize) pages and attention would need per-layer lengths.
 * Per-head budgets (AdaKV) need a budgets buffer in kv_select/kv_compact
 * (see kv-select.ts) and, likewise, per-head lengths in attention.
 */

/**
 * What compaction needs from the KV cache manager (KVCacheManager, or a test double).
 */
export interface CompactableKv {
  blockTable(seqId: SeqId): readonly number[];
  numTokens(seqId: SeqId): number;
  /** Keeps the sequence's first `keep` slots, frees its pages past ceil(keep / pageSize) (last page first) and records the evicted tokens as its position offset. */
  compact(seqId: SeqId, keep: number): void;
  readonly pageSize: number;
  readonly pool: { refCount(page: number): number };
}

export interface CompactSequenceOptions {
  pool: Pick<KvPool, 'numLayers' | 'layers' | 'geometry'>;
  kv: CompactableKv;
  seqId: SeqId;
  /** Per layer: f32 [numKvHeads][numTokens] scores of the sequence's cached tokens, higher = keep. */
  scoresPerLayer: readonly GPUBuffer[];
  /** Tokens kept per kv head and layer, 1..numTokens. */
  keep: number;
}

export interface CompactSequenceResult {
  numTokensBefore: number;
  /** Cached tokens after compaction (= keep). */
  numTokens: number;
  /** numTokensBefore - keep: the next token's RoPE position is numTokens + positionOffset. */
  positionOffset: number;
  /** Pages returned to the pool (already out of the block table). */
  freedPages: number[];
  /** Destroys the scratch buffers (block table, indices); call once `rec.submit()` has resolved. */
  release(): void;
}

/**
 * Encodes kv_select + kv_compact for every layer of `seqId` into `rec`, then
 * (CPU, right away) compacts the sequence's bookkeeping to `keep` tokens, freeing its
 * trailing pages. The freed pages may be reallocated at once: that is safe as
 * long as `rec` is submitted before any other command buffer that writes
 * them (the queue runs submissions in order; later dispatches in `rec` itself
 * run after the compaction).
 *
 * Throws before encoding anything if a page of the sequence is shared
 * (refCount > 1, e.g. a prefix-cache page): compaction is in place, so shared
 * pages must be copied on write first.
 */
export function compactSequence(rec: CommandRecorder, o: CompactSequenceOptions): CompactSequenceResult {
  const { pool, kv, seqId, keep } = o;
  const g = pool.geometry;
  const n = kv.numTokens(seqId);
  const table = [...kv.blockTable(seqId)];
  checkArgs(o, n, table);
  const keptPages = Math.ceil(keep / kv.pageSize);
  const result = { numTokensBefore: n, numTokens: keep, positionOffset: n - keep, freedPages: table.slice(keptPages) };
  if (keep === n) return { ...result, release: () => {} };

  const gpu = rec.gpu;
  const tableBuf = storageBuffer(gpu, 'compact:blockTable', table.length * 4);
  writeBuffer(gpu, tableBuf, Uint32Array.from(table));
  // One indices buffer serves every layer: dispatches in a pass run in order.
  const indices = storageBuffer(gpu, 'compact:indices', g.numKvHeads * keep * 4);
  for (let l = 0; l < pool.numLayers; l++) {
    encodeKvSelect(rec, { scores: o.scoresPerLayer[l], indices, numKvHeads: g.numKvHeads, numTokens: n, k: keep });
    encodeKvCompact(rec, { ...g, pool: pool.layers[l], blockTable: tableBuf, indices, numTokens: n, k: keep });
  }
  kv.compact(seqId, keep);
  return {
    ...result,
    release: () => {
      gpu.destroyBuffer(tableBuf);
      gpu.destroyBuffer(indices);
    },
  };
}

// ---------------------------------------------------------------- helpers

function checkArgs(o: CompactSequenceOptions, n: number, table: readonly number[]): void {
  const where = `compactSequence(${JSON.stringify(o.seqId)})`;
  if (!Number.isInteger(o.keep) || o.keep < 1 || o.keep > n) throw new RangeError(`${where}: keep must be an integer in 1..${n} (the sequence's tokens), got ${o.keep}`);
  if (o.kv.pageSize !== o.pool.geometry.pageSize) throw new RangeError(`${where}: the manager's pageSize ${o.kv.pageSize} differs from the pool's ${o.pool.geometry.pageSize}`);
  if (o.scoresPerLayer.length !== o.pool.numLayers) throw new RangeError(`${where}: ${o.scoresPerLayer.length} score buffers for ${o.pool.numLayers} layers`);
  if (new Set(table).size !== table.length) throw new Error(`${where}: the block table lists a page twice`);
  const shared = table.filter((p) => o.kv.pool.refCount(p) > 1);
  if (shared.length) throw new Error(`${where}: pages [${shared.join(' ')}] are shared (refCount > 1); compaction is in place, copy them on write first`);
}
