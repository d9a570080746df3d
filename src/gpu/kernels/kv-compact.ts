import sourceRaw from '../../../shaders/kv_compact.wgsl?raw';
import kvLayout from '../../../shaders/kv_layout.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { assertKvGeometry, type KvGeometry, kvPageBytes, kvRowWords } from '../kv-layout.ts';

// every kernel that addresses the pool shares its layout function
const source = sourceRaw + kvLayout;

export interface KvCompactArgs extends KvGeometry {
  /** One layer's pool buffer (KvPool.layer(l)); compacted in place. */
  pool: GPUBuffer;
  /** u32 page ids of the sequence, token order (distinct pages, not shared with another sequence). */
  blockTable: GPUBuffer;
  /** u32 [numKvHeads][k]: each head's kept token indices, strictly ascending (what encodeKvSelect writes). */
  indices: GPUBuffer;
  /** Tokens the sequence holds before compaction. */
  numTokens: number;
  /** Tokens kept per head, 1..numTokens. */
  k: number;
}

const WG = 64;

/**
 * Moves, for each kv head, the K and V of the kept tokens `indices[h][j]` to
 * the sequence's slots j = 0..k-1 (through its block table), bit for bit.
 * In place without scratch: one thread per (K|V, head, word) copies j in
 * ascending order, which is safe because indices[j] >= j (shader header).
 * Slots k.. are left as they were (the caller shrinks the table).
 */
export function encodeKvCompact(rec: CommandRecorder, a: KvCompactArgs): void {
  const kernel = 'kv_compact';
  assertKvGeometry(kernel, a);
  assertPositiveInt(kernel, { numTokens: a.numTokens, k: a.k });
  if (a.k > a.numTokens) throw new RangeError(`${kernel}: k (${a.k}) must be at most numTokens (${a.numTokens})`);
  const pageBytes = kvPageBytes(a);
  assertFits(kernel, { pool: a.pool }, pageBytes);
  assertFits(kernel, { blockTable: a.blockTable }, Math.ceil(a.numTokens / a.pageSize) * 4);
  assertFits(kernel, { indices: a.indices }, a.numKvHeads * a.k * 4);
  if (a.pool === a.blockTable || a.pool === a.indices) throw new RangeError(`${kernel}: pool must not also be bound as blockTable or indices`);
  const numPages = Math.floor(a.pool.size / pageBytes);
  const rowWords = kvRowWords(a);
  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG });
  const u = new Uniforms().u32(a.numKvHeads).u32(rowWords).u32(a.pageSize).u32(numPages).u32(a.k).u32(a.numTokens);
  rec.dispatch(pipeline, [a.blockTable, a.indices, a.pool], u, Math.ceil((2 * a.numKvHeads * rowWords) / WG));
}
