import attentionSourceRaw from '../../../shaders/kv_score_attention.wgsl?raw';
import expectedSourceRaw from '../../../shaders/kv_score_expected.wgsl?raw';
import knormSourceRaw from '../../../shaders/kv_score_knorm.wgsl?raw';
import positionSource from '../../../shaders/kv_score_position.wgsl?raw';
import kvLayout from '../../../shaders/kv_layout.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { assertKvGeometry, type KvGeometry, kvPageBytes } from '../kv-layout.ts';

// every kernel that addresses the pool shares its layout function
const attentionSource = attentionSourceRaw + kvLayout;
const expectedSource = expectedSourceRaw + kvLayout;
const knormSource = knormSourceRaw + kvLayout;

/**
 * Scoring kernels for KV-cache compression: one score per cached token of
 * one sequence, per kv head, `out` f32 [numKvHeads][numTokens], higher =
 * keep. They know nothing of presses or models (src/kv/presses maps rules
 * onto them).
 */

/** One sequence's keys in one layer's paged pool. */
export interface KvScoreSeqArgs extends KvGeometry {
  /** One layer's pool buffer (KvPool.layer(l)). */
  pool: GPUBuffer;
  /** u32 page ids of the sequence, in token order. */
  blockTable: GPUBuffer;
  numTokens: number;
  /** f32 [numKvHeads][numTokens]. */
  out: GPUBuffer;
}

/** The observation window: the last `window` tokens' queries (after RoPE). */
export interface KvScoreWindowArgs extends KvScoreSeqArgs {
  /** f32; query row i (at position numTokens - window + i), head h, dim d at q[i*qRowStride + qOffset + h*headDim + d]. */
  q: GPUBuffer;
  qRowStride: number;
  qOffset: number;
  window: number;
  numHeads: number;
  /** f32 scratch of `kvScore…ScratchBytes` bytes; not `out`. */
  scratch: GPUBuffer;
  /** Default 1/sqrt(headDim). */
  scale?: number;
}

export type KvAttentionScoreMode = 'mean' | 'last' | 'sum';

export interface KvScoreAttentionArgs extends KvScoreWindowArgs {
  /** mean over the window's queries (SnapKV), the last query only (TOVA), or their sum (H2O); always the mean over the kv group's heads. */
  mode: KvAttentionScoreMode;
  /** Max-pool width (odd; 1 = none). */
  poolKernel: number;
  /** Keys at or after this index get `keepScore` and are left out of the pooling (numTokens = none). */
  keepFrom: number;
  keepScore: number;
}

export interface KvScoreExpectedArgs extends KvScoreWindowArgs {
  /** The first `sinks` tokens get `keepScore`. */
  sinks: number;
  keepScore: number;
}

/** Largest head dim the kernels' private K row holds (MAX_DIM in the shaders). */
export const KV_SCORE_MAX_HEAD_DIM = 256;
const WG = 64;

// ---------------------------------------------------------------- knorm

/** out[g, j] = -‖K_j‖ for kv head g (KnormPress). */
export function encodeKvScoreKnorm(rec: CommandRecorder, a: KvScoreSeqArgs): void {
  const kernel = 'kv_score_knorm';
  if (!checkSeq(kernel, a)) return;
  const pipeline = rec.gpu.pipelines.get(kernel, knormSource, kvConstants(a));
  const u = new Uniforms().u32(a.numTokens).u32(a.numKvHeads).u32(a.pageSize);
  rec.dispatch(pipeline, [a.blockTable, a.pool, a.out], u, Math.ceil((a.numKvHeads * a.numTokens) / WG));
}

// ---------------------------------------------------------------- position

export interface KvScorePositionArgs {
  out: GPUBuffer;
  numKvHeads: number;
  numTokens: number;
  /** The first `sinks` tokens get `keepScore`; the rest score their position. */
  sinks: number;
  keepScore: number;
}

/** out[g, j] = keepScore for j < sinks, else j (StreamingLLM, sliding window). */
export function encodeKvScorePosition(rec: CommandRecorder, a: KvScorePositionArgs): void {
  const kernel = 'kv_score_position';
  if (a.numTokens === 0) return;
  assertPositiveInt(kernel, { numKvHeads: a.numKvHeads, numTokens: a.numTokens });
  assertNonNegInt(kernel, { sinks: a.sinks });
  if (a.numTokens >= 2 ** 24) throw new RangeError(`${kernel}: numTokens ${a.numTokens} is past 2^24, where f32 positions stop being exact`);
  assertFits(kernel, { out: a.out }, a.numKvHeads * a.numTokens * 4);
  const pipeline = rec.gpu.pipelines.get(kernel, positionSource, { WG });
  const u = new Uniforms().u32(a.numTokens).u32(a.numKvHeads).u32(a.sinks).f32(a.keepScore);
  rec.dispatch(pipeline, [a.out], u, Math.ceil((a.numKvHeads * a.numTokens) / WG));
}

// ---------------------------------------------------------------- attention

/** Bytes of scratch encodeKvScoreAttention needs: softmax stats per (window query, head), then raw scores. */
export function kvScoreAttentionScratchBytes(window: number, numHeads: number, numKvHeads: number, numTokens: number): number {
  return (attentionRawBase(window, numHeads) + numKvHeads * numTokens) * 4;
}

const attentionRawBase = (window: number, numHeads: number) => window * numHeads * 2;

/**
 * Softmax attention of the window's queries to every key (causal), combined
 * by `mode` and over the kv group's heads, then max-pooled; see
 * shaders/kv_score_attention.wgsl. Three dispatches.
 */
export function encodeKvScoreAttention(rec: CommandRecorder, a: KvScoreAttentionArgs): void {
  const kernel = 'kv_score_attention';
  if (!checkWindow(kernel, a)) return;
  if (!Number.isInteger(a.poolKernel) || a.poolKernel < 1 || a.poolKernel % 2 === 0) throw new RangeError(`${kernel}: poolKernel must be a positive odd integer, got ${a.poolKernel}`);
  assertNonNegInt(kernel, { keepFrom: a.keepFrom });
  if (a.keepFrom > a.numTokens) throw new RangeError(`${kernel}: keepFrom ${a.keepFrom} is past numTokens ${a.numTokens}`);
  assertFits(kernel, { scratch: a.scratch }, kvScoreAttentionScratchBytes(a.window, a.numHeads, a.numKvHeads, a.numTokens));
  const group = a.numHeads / a.numKvHeads;
  const qFirst = a.mode === 'last' ? a.window - 1 : 0;
  const invScale = a.mode === 'mean' ? 1 / (a.window * group) : 1 / group;
  const u = new Uniforms()
    .u32(a.numTokens).u32(a.window).u32(qFirst).u32(a.numHeads).u32(group).u32(a.numKvHeads).u32(a.pageSize)
    .u32(a.qRowStride).u32(a.qOffset).u32((a.poolKernel - 1) / 2).u32(a.keepFrom).u32(attentionRawBase(a.window, a.numHeads))
    .f32(a.scale ?? 1 / Math.sqrt(a.headDim)).f32(invScale).f32(a.keepScore);
  const bindings = [a.q, a.blockTable, a.pool, a.scratch, a.out];
  const pipe = (entry: string) => rec.gpu.pipelines.get(kernel, attentionSource, kvConstants(a), entry);
  const perKey = Math.ceil((a.numKvHeads * a.numTokens) / WG);
  rec.dispatch(pipe('stats'), bindings, u, Math.ceil(((a.window - qFirst) * a.numHeads) / WG));
  rec.dispatch(pipe('scores'), bindings, u, perKey);
  rec.dispatch(pipe('finish'), bindings, u, perKey);
}

// ---------------------------------------------------------------- expected attention

/** Bytes of scratch encodeKvScoreExpected needs: query mean/variance, logits, softmax stats. */
export function kvScoreExpectedScratchBytes(numHeads: number, headDim: number, numTokens: number): number {
  return (expectedBases(numHeads, headDim, numTokens).normBase + 2 * numHeads) * 4;
}

function expectedBases(numHeads: number, headDim: number, numTokens: number) {
  const logitBase = numHeads * 2 * headDim;
  return { logitBase, normBase: logitBase + numHeads * numTokens };
}

/**
 * Expected attention of future queries (window mean and diagonal variance)
 * to every key, times ‖V‖; see shaders/kv_score_expected.wgsl. Four dispatches.
 */
export function encodeKvScoreExpected(rec: CommandRecorder, a: KvScoreExpectedArgs): void {
  const kernel = 'kv_score_expected';
  if (!checkWindow(kernel, a)) return;
  assertNonNegInt(kernel, { sinks: a.sinks });
  assertFits(kernel, { scratch: a.scratch }, kvScoreExpectedScratchBytes(a.numHeads, a.headDim, a.numTokens));
  const { logitBase, normBase } = expectedBases(a.numHeads, a.headDim, a.numTokens);
  const u = new Uniforms()
    .u32(a.numTokens).u32(a.window).u32(a.numHeads).u32(a.numHeads / a.numKvHeads).u32(a.numKvHeads).u32(a.pageSize)
    .u32(a.qRowStride).u32(a.qOffset).u32(a.sinks).u32(logitBase).u32(normBase)
    .f32(a.scale ?? 1 / Math.sqrt(a.headDim)).f32(a.keepScore);
  const bindings = [a.q, a.blockTable, a.pool, a.scratch, a.out];
  const pipe = (entry: string) => rec.gpu.pipelines.get(kernel, expectedSource, kvConstants(a), entry);
  const perKey = Math.ceil((a.numKvHeads * a.numTokens) / WG);
  rec.dispatch(pipe('qstats'), bindings, u, Math.ceil((a.numHeads * a.headDim) / WG));
  rec.dispatch(pipe('logits'), bindings, u, perKey);
  rec.dispatch(pipe('norm'), bindings, u, Math.ceil(a.numHeads / WG));
  rec.dispatch(pipe('scores'), bindings, u, perKey);
}

// ---------------------------------------------------------------- guards

function kvConstants(a: KvGeometry): Record<string, number> {
  return { WG, KV_F16: a.dtype === 'f16' ? 1 : 0, HEAD_DIM: a.headDim };
}

function assertNonNegInt(kernel: string, dims: Record<string, number>): void {
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${kernel}: ${name} must be a non-negative integer, got ${v}`);
  }
}

/** Guards for a sequence's keys in the pool; false when there is nothing to score. */
function checkSeq(kernel: string, a: KvScoreSeqArgs): boolean {
  assertKvGeometry(kernel, a);
  if (a.numTokens === 0) return false;
  assertPositiveInt(kernel, { numTokens: a.numTokens });
  if (a.headDim % 2 !== 0 || a.headDim > KV_SCORE_MAX_HEAD_DIM) {
    throw new RangeError(`${kernel}: headDim must be even and at most ${KV_SCORE_MAX_HEAD_DIM}, got ${a.headDim}`);
  }
  assertFits(kernel, { blockTable: a.blockTable }, Math.ceil(a.numTokens / a.pageSize) * 4);
  assertFits(kernel, { pool: a.pool }, kvPageBytes(a));
  assertFits(kernel, { out: a.out }, a.numKvHeads * a.numTokens * 4);
  return true;
}

function checkWindow(kernel: string, a: KvScoreWindowArgs): boolean {
  if (!checkSeq(kernel, a)) return false;
  assertPositiveInt(kernel, { window: a.window, numHeads: a.numHeads, qRowStride: a.qRowStride });
  assertNonNegInt(kernel, { qOffset: a.qOffset });
  if (a.window > a.numTokens) throw new RangeError(`${kernel}: window ${a.window} is longer than the sequence (${a.numTokens} tokens)`);
  if (a.numHeads % a.numKvHeads !== 0) throw new RangeError(`${kernel}: numHeads (${a.numHeads}) must be a multiple of numKvHeads (${a.numKvHeads})`);
  const rowSpan = a.numHeads * a.headDim;
  if (a.window > 1 && a.qRowStride < a.qOffset + rowSpan) {
    throw new RangeError(`${kernel}: qRowStride ${a.qRowStride} is smaller than qOffset + numHeads*headDim = ${a.qOffset + rowSpan}`);
  }
  assertFits(kernel, { q: a.q }, ((a.window - 1) * a.qRowStride + a.qOffset + rowSpan) * 4);
  if (a.scratch === a.out) throw new RangeError(`${kernel}: scratch and out must be different buffers`);
  return true;
}
