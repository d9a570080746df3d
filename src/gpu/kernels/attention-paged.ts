import sourceRaw from '../../../shaders/attention_paged.wgsl?raw';
import kvLayout from '../../../shaders/kv_layout.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { assertKvGeometry, type KvDtype, kvPageBytes } from '../kv-layout.ts';

// every kernel that addresses the pool shares its layout function
const source = sourceRaw + kvLayout;

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
  /**
   * Optional u32 pairs per row, [A, B] (nq * 8 bytes at least): row r's keys
   * A <= j < B are masked — left out of the softmax exactly as if they did not
   * exist — so the row sees j < A ("sinks") and B <= j <= p ("recent").
   * Contract (the wrapper reads no GPU buffer, so it is not checked):
   * A <= B <= p, hence key p always stays visible; A = B masks nothing; a row
   * left with no visible key gets NaN. Absent: nothing is masked and the
   * kernel is the unmasked variant (MASKED = false), bitwise the same results.
   */
  rowMask?: GPUBuffer;
}

export interface AttentionPagedSplitArgs extends AttentionPagedArgs {
  /** At least the largest context in the batch (max position + 1); sets how many splits are reserved per row. */
  maxContext: number;
  /** f32 scratch of `attentionSplitScratchBytes(nq, numHeads, headDim, maxContext)` bytes. */
  partials: GPUBuffer;
}

/** Largest head dim the kernel's private accumulators hold (4 * MAX_QUADS + 2 in the shader, rounded to what we test). */
export const ATTENTION_MAX_HEAD_DIM = 256;
/**
 * Keys per split (SPLIT in the shader). Part of the reduction structure: both
 * entry points use it, so they give bitwise equal results. A multiple of 16 (BLOCK).
 */
export const ATTENTION_KEYS_PER_SPLIT = 64;
const WG = 32;

/**
 * Causal attention for `nq` query rows over the paged pool: any mix of
 * sequences (a prefill chunk, a decode batch). One thread per (row, head)
 * walks the row's keys, minus the masked range of `rowMask` when given. Each
 * row's result depends only on its own q, table, position and mask (batch
 * invariant).
 */
export function encodeAttentionPaged(rec: CommandRecorder, a: AttentionPagedArgs): void {
  if (!checkArgs('attention_paged', a)) return;
  const pipeline = rec.gpu.pipelines.get('attention_paged', source, constants(a), 'main');
  rec.dispatch(pipeline, commonBindings(a), uniforms(a, 0), Math.ceil((a.nq * a.numHeads) / WG));
}

/**
 * The same attention, with each row's keys cut into splits of
 * ATTENTION_KEYS_PER_SPLIT processed in parallel (`split_partial`), then merged
 * in ascending order per (row, head) (`split_combine`): more threads for long
 * contexts and small batches (decode on a real GPU). Executes the same
 * floating-point operations as `encodeAttentionPaged`, so results are bitwise
 * equal on a given device (checked on SwiftShader; a driver that contracts
 * differently per entry point could break this, so pick the kernel by stage,
 * not by batch size, where bitwise batch invariance matters). With a
 * `rowMask` too: both paths skip the same keys, blocks and splits.
 */
export function encodeAttentionPagedSplit(rec: CommandRecorder, a: AttentionPagedSplitArgs): void {
  const kernel = 'attention_paged_split';
  if (!checkArgs(kernel, a)) return;
  assertPositiveInt(kernel, { maxContext: a.maxContext });
  if (a.partials === a.out) throw new RangeError(`${kernel}: partials and out must be different buffers`);
  if (a.rowMask === a.partials) throw new RangeError(`${kernel}: rowMask and partials must be different buffers`);
  assertFits(kernel, { partials: a.partials }, attentionSplitScratchBytes(a.nq, a.numHeads, a.headDim, a.maxContext));
  const maxSplits = Math.ceil(a.maxContext / ATTENTION_KEYS_PER_SPLIT);
  const bindings = [...commonBindings(a), a.partials];
  const u = uniforms(a, maxSplits);
  rec.dispatch(rec.gpu.pipelines.get('attention_paged', source, constants(a), 'split_partial'), bindings, u, Math.ceil((a.nq * a.numHeads * maxSplits) / WG));
  rec.dispatch(rec.gpu.pipelines.get('attention_paged', source, constants(a), 'split_combine'), bindings, u, Math.ceil((a.nq * a.numHeads) / WG));
}

/** Bytes of the `partials` scratch encodeAttentionPagedSplit needs: per (row, head, split) m, l and headDim sums. */
export function attentionSplitScratchBytes(nq: number, numHeads: number, headDim: number, maxContext: number): number {
  return nq * numHeads * Math.ceil(maxContext / ATTENTION_KEYS_PER_SPLIT) * (headDim + 2) * 4;
}

/** Shape guards shared by both entry points; false when there is nothing to do (nq = 0). */
function checkArgs(kernel: string, a: AttentionPagedArgs): boolean {
  assertKvGeometry(kernel, a);
  if (a.nq === 0) return false;
  assertPositiveInt(kernel, { nq: a.nq, numHeads: a.numHeads, qRowStride: a.qRowStride });
  if (a.headDim % 2 !== 0 || a.headDim > ATTENTION_MAX_HEAD_DIM) {
    throw new RangeError(`${kernel}: headDim must be even and at most ${ATTENTION_MAX_HEAD_DIM}, got ${a.headDim}`);
  }
  if (a.numHeads % a.numKvHeads !== 0) {
    throw new RangeError(`${kernel}: numHeads (${a.numHeads}) must be a multiple of numKvHeads (${a.numKvHeads})`);
  }
  if (!Number.isInteger(a.qOffset) || a.qOffset < 0) throw new RangeError(`${kernel}: qOffset must be a non-negative integer, got ${a.qOffset}`);
  const rowSpan = a.numHeads * a.headDim;
  if (a.nq > 1 && a.qRowStride < a.qOffset + rowSpan) {
    throw new RangeError(`${kernel}: qRowStride ${a.qRowStride} is smaller than qOffset + numHeads*headDim = ${a.qOffset + rowSpan}`);
  }
  assertFits(kernel, { q: a.q }, ((a.nq - 1) * a.qRowStride + a.qOffset + rowSpan) * 4);
  assertFits(kernel, { rowInfo: a.rowInfo }, a.nq * 8);
  assertFits(kernel, { out: a.out }, a.nq * rowSpan * 4);
  assertFits(kernel, { blockTables: a.blockTables }, 4);
  assertFits(kernel, { pool: a.pool }, kvPageBytes(a));
  if (a.rowMask) {
    if (a.rowMask === a.out) throw new RangeError(`${kernel}: rowMask and out must be different buffers`);
    assertFits(kernel, { rowMask: a.rowMask }, a.nq * 8);
  }
  return true;
}

/**
 * Bindings 1..6 of every entry point. Without a mask the MASKED = false
 * variant never reads binding 6, but WGSL bindings are fixed per shader, so it
 * gets rowInfo (already bound read-only): no extra buffer, nothing allocated.
 */
function commonBindings(a: AttentionPagedArgs): GPUBuffer[] {
  return [a.q, a.blockTables, a.rowInfo, a.pool, a.out, a.rowMask ?? a.rowInfo];
}

function constants(a: AttentionPagedArgs): Record<string, number> {
  return { WG, KV_F16: a.dtype === 'f16' ? 1 : 0, MASKED: a.rowMask ? 1 : 0, HEAD_DIM: a.headDim, SPLIT: ATTENTION_KEYS_PER_SPLIT };
}

function uniforms(a: AttentionPagedArgs, maxSplits: number): Uniforms {
  return new Uniforms()
    .u32(a.nq)
    .u32(a.numHeads)
    .u32(a.numHeads / a.numKvHeads)
    .u32(a.numKvHeads)
    .u32(a.pageSize)
    .u32(a.qRowStride)
    .u32(a.qOffset)
    .u32(maxSplits)
    .f32(a.scale ?? 1 / Math.sqrt(a.headDim));
}
