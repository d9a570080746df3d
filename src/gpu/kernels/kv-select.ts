import source from '../../../shaders/kv_select.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

export interface KvSelectArgs {
  /** f32 [numKvHeads][numTokens]: one score per cached token and kv head, higher = keep. */
  scores: GPUBuffer;
  /** u32 [numKvHeads][k] (written): each head's kept token indices, ascending. */
  indices: GPUBuffer;
  numKvHeads: number;
  numTokens: number;
  /** Tokens kept per head, 1..numTokens (a uniform budget: the same for every head). */
  k: number;
}

const WG = 64;

/**
 * Exact top-k per kv head: for each head, the indices of its `k` highest
 * scores in ascending token order; ties at the k-th score keep the lower
 * indices. Scores are ordered by their f32 bit pattern (-0 < +0; NaNs by
 * bits), see shaders/kv_select.wgsl. One workgroup per head; each head's row
 * depends only on its own scores (batch invariant, and exact).
 *
 * Budgets: uniform here. Per-head budgets (AdaKV) would add a u32
 * `budgets[numKvHeads]` binding read instead of `k`, rows strided by the
 * largest budget; per-layer budgets (PyramidKV) are simply a different `k`
 * per layer's call (see src/kv/compaction.ts for what that means for pages).
 */
export function encodeKvSelect(rec: CommandRecorder, a: KvSelectArgs): void {
  const kernel = 'kv_select';
  assertPositiveInt(kernel, { numKvHeads: a.numKvHeads, numTokens: a.numTokens, k: a.k });
  if (a.k > a.numTokens) throw new RangeError(`${kernel}: k (${a.k}) must be at most numTokens (${a.numTokens})`);
  if (a.scores === a.indices) throw new RangeError(`${kernel}: scores and indices must be different buffers`);
  assertFits(kernel, { scores: a.scores }, a.numKvHeads * a.numTokens * 4);
  assertFits(kernel, { indices: a.indices }, a.numKvHeads * a.k * 4);
  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG });
  const u = new Uniforms().u32(a.numKvHeads).u32(a.numTokens).u32(a.k);
  rec.dispatch(pipeline, [a.scores, a.indices], u, a.numKvHeads);
}
