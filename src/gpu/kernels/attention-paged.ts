import source from '../../../shaders/attention_paged.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { assertKvGeometry, type KvDtype, kvPageBytes } from './kv-write.ts';

export interface AttentionPagedArgs {
  /** f32; q of row r, head h, dim d at q[r*qRowStride + qOffset + h*headDim + d]. */
  q: GPUBuffer;
  qRowStride: number;
  qOffset: number;
  /** u32 page ids: the block tables of the batch's sequences, concatenated. */
  blockTables: GPUBuffer;
  /** u32 pairs per row: [offset of its table in blockTables, absolute position p]; the row attends to keys 0..p. */
  rowInfo: GPUBuffer;
  /** One layer's pool buffer (KvPool.layer(l)). */
  pool: GPUBuffer;
  /** f32 [nq][numHeads][headDim]. */
  out: GPUBuffer;
  nq: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  dtype: KvDtype;
  /** Default 1/sqrt(headDim). */
  scale?: number;
}

/** Largest head dim the kernel's private accumulator holds (MAX_PAIRS * 2 in the shader). */
export const ATTENTION_MAX_HEAD_DIM = 256;
const WG = 32;

/**
 * Causal attention for `nq` query rows over the paged pool: any mix of
 * sequences (a prefill chunk, a decode batch). Each row's result depends only
 * on its own q, table and position (batch invariant).
 */
export function encodeAttentionPaged(rec: CommandRecorder, a: AttentionPagedArgs): void {
  const kernel = 'attention_paged';
  assertKvGeometry(kernel, a);
  if (a.nq === 0) return;
  assertPositiveInt(kernel, { nq: a.nq, numHeads: a.numHeads, qRowStride: a.qRowStride });
  if (a.headDim % 2 !== 0 || a.headDim > ATTENTION_MAX_HEAD_DIM) {
    throw new RangeError(`${kernel}: headDim must be even and at most ${ATTENTION_MAX_HEAD_DIM}, got ${a.headDim}`);
  }
  if (a.numHeads % a.numKvHeads !== 0) {
    throw new RangeError(`${kernel}: numHeads (${a.numHeads}) must be a multiple of numKvHeads (${a.numKvHeads})`);
  }
  if (!Number.isInteger(a.qOffset) || a.qOffset < 0) throw new RangeError(`${kernel}: qOffset must be a non-negative integer, got ${a.qOffset}`);
  const rowSpan = a.numHeads * a.headDim;
  if (a.qRowStride < a.qOffset + rowSpan && a.nq > 1) {
    throw new RangeError(`${kernel}: qRowStride ${a.qRowStride} is smaller than qOffset + numHeads*headDim = ${a.qOffset + rowSpan}`);
  }
  assertFits(kernel, { q: a.q }, ((a.nq - 1) * a.qRowStride + a.qOffset + rowSpan) * 4);
  assertFits(kernel, { rowInfo: a.rowInfo }, a.nq * 8);
  assertFits(kernel, { out: a.out }, a.nq * rowSpan * 4);
  assertFits(kernel, { blockTables: a.blockTables }, 4);
  assertFits(kernel, { pool: a.pool }, kvPageBytes(a));
  const scale = a.scale ?? 1 / Math.sqrt(a.headDim);

  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG, KV_F16: a.dtype === 'f16' ? 1 : 0 });
  const u = new Uniforms()
    .u32(a.nq)
    .u32(a.numHeads)
    .u32(a.numHeads / a.numKvHeads)
    .u32(a.numKvHeads)
    .u32(a.headDim / 2)
    .u32(a.pageSize)
    .u32(a.qRowStride)
    .u32(a.qOffset)
    .f32(scale);
  rec.dispatch(pipeline, [a.q, a.blockTables, a.rowInfo, a.pool, a.out], u, Math.ceil((a.nq * a.numHeads) / WG));
}
