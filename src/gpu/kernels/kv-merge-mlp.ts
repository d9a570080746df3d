import sourceRaw from '../../../shaders/kv_merge_mlp.wgsl?raw';
import kvLayout from '../../../shaders/kv_layout.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { assertKvGeometry, type KvGeometry, kvPageBytes, kvRowWords } from '../kv-layout.ts';

// every kernel that addresses the pool shares its layout function
const source = sourceRaw + kvLayout;

export interface KvMergeMlpArgs extends KvGeometry {
  /** One layer's pool buffer (KvPool.layer(l)); only read. */
  pool: GPUBuffer;
  /** u32 page ids of the sequence, token order. */
  blockTable: GPUBuffer;
  /** f32, this layer's compressor: [K: W1 b1 W2 b2 W3 b3][V: the same] (kvMergeMlpWeightFloats). */
  weights: GPUBuffer;
  /** f32 [groups][K|V][kvHead][headDim]: the merged rows, in kv_write's src layout (rowStride 2·numKvHeads·headDim). */
  out: GPUBuffer;
  /** Tokens merged into one row. */
  factor: number;
  /** Groups merged: tokens start .. start + groups·factor - 1 are read. */
  groups: number;
  /** First token (sequence index) of the first group. */
  start: number;
}

/** f32 values of one layer's compressor (K and V MLPs) for a head size and factor. */
export function kvMergeMlpWeightFloats(headDim: number, factor: number): number {
  const one = headDim * factor * headDim + headDim + 2 * (headDim * headDim + headDim);
  return 2 * one;
}

/** Largest head size the kernel takes: one thread per output element in a workgroup. */
export const KV_MERGE_MAX_HEAD_DIM = 256;

/**
 * FastCache's CCM for one layer: each group of `factor` consecutive tokens
 * (from `start`) becomes one merged K row and one merged V row per kv head,
 * through the layer's MLPs (shaders/kv_merge_mlp.wgsl). Writes `out`; the
 * pool is not changed (kv_write puts the rows in place, then kv_compact).
 */
export function encodeKvMergeMlp(rec: CommandRecorder, a: KvMergeMlpArgs): void {
  const kernel = 'kv_merge_mlp';
  assertKvGeometry(kernel, a);
  assertPositiveInt(kernel, { factor: a.factor, groups: a.groups });
  if (!Number.isInteger(a.start) || a.start < 0) throw new RangeError(`${kernel}: start must be a non-negative integer, got ${a.start}`);
  if (a.headDim > KV_MERGE_MAX_HEAD_DIM) throw new RangeError(`${kernel}: headDim ${a.headDim} is over the kernel's ${KV_MERGE_MAX_HEAD_DIM}`);
  const tokens = a.start + a.groups * a.factor;
  assertFits(kernel, { blockTable: a.blockTable }, Math.ceil(tokens / a.pageSize) * 4);
  assertFits(kernel, { weights: a.weights }, kvMergeMlpWeightFloats(a.headDim, a.factor) * 4);
  assertFits(kernel, { out: a.out }, a.groups * 2 * a.numKvHeads * a.headDim * 4);
  const pageBytes = kvPageBytes(a);
  assertFits(kernel, { pool: a.pool }, pageBytes);
  if (a.out === a.pool) throw new RangeError(`${kernel}: out must not be the pool (other groups still read the slots the merged rows replace)`);
  const numPages = Math.floor(a.pool.size / pageBytes);
  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG: a.headDim, XN: a.factor * a.headDim, KV_F16: a.dtype === 'f16' ? 1 : 0 });
  const u = new Uniforms().u32(a.numKvHeads).u32(kvRowWords(a)).u32(a.pageSize).u32(numPages).u32(a.headDim).u32(a.factor).u32(a.groups).u32(a.start);
  rec.dispatch(pipeline, [a.blockTable, a.weights, a.pool, a.out], u, a.groups * 2 * a.numKvHeads);
}
