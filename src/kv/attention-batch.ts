import type { KVCacheManager, SeqId } from './kv-cache-manager.ts';

/** Query tokens [start, start+count) of one sequence, in one forward step. */
export interface BatchRows {
  seqId: SeqId;
  start: number;
  count: number;
}

/** What the paged kernels read for one step (upload each as a u32 storage buffer). */
export interface PackedBatch {
  /** Query rows in total (sum of counts). */
  nq: number;
  /** The block tables of the batch's sequences, concatenated (each sequence once). */
  blockTables: Uint32Array;
  /** Per query row: [offset of its sequence's table in blockTables, absolute position]. */
  rowInfo: Uint32Array;
  /** Per query row: the slot its K/V goes to (kv_write). */
  slots: Uint32Array;
}

/**
 * Packs a step's rows — a prefill chunk of one sequence, a decode batch of
 * many (count 1 each), or any mix — into the buffers encodeKvWrite and
 * encodeAttentionPaged read. The tokens must already be allocated
 * (`allocateSlots`). Rows keep the order given.
 *
 *   rows  [{A, 0, 3}, {B, 7, 1}]          tables A: [p4 p9]   B: [p2]
 *   blockTables  [4 9 | 2]
 *   rowInfo      [0 0, 0 1, 0 2, 2 7]     (table offset, position) per row
 */
export function packAttentionBatch(kv: KVCacheManager, rows: readonly BatchRows[]): PackedBatch {
  const tableOffset = new Map<SeqId, number>();
  const tables: number[] = [];
  let nq = 0;
  for (const r of rows) {
    if (!tableOffset.has(r.seqId)) {
      tableOffset.set(r.seqId, tables.length);
      tables.push(...kv.blockTable(r.seqId));
    }
    nq += r.count;
  }
  const rowInfo = new Uint32Array(2 * nq);
  const slots = new Uint32Array(nq);
  let q = 0;
  for (const r of rows) {
    slots.set(kv.slotsFor(r.seqId, r.start, r.count), q);
    for (let i = 0; i < r.count; i++, q++) {
      rowInfo[2 * q] = tableOffset.get(r.seqId)!;
      rowInfo[2 * q + 1] = r.start + i;
    }
  }
  // A zero-length binding is invalid: keep at least one word.
  const blockTables = new Uint32Array(Math.max(1, tables.length));
  blockTables.set(tables);
  return { nq, blockTables, rowInfo, slots };
}
