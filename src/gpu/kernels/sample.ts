import source from '../../../shaders/sample.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import { SAMPLE_PARAMS_BYTES, sampleWorkgroupSize } from './sample-params.ts';

export { packSamplingParams, type SamplingParams } from './sample-params.ts';

export interface SampleArgs {
  /** f32 [rows, vocab], row-major; finite values (mask with -1e30, not -inf). */
  logits: GPUBuffer;
  /** packSamplingParams(...) for these rows: 32 bytes per row. */
  params: GPUBuffer;
  /** u32 [rows]: the sampled token ids. */
  out: GPUBuffer;
  rows: number;
  vocab: number;
}

/** Largest vocab: counts are accumulated in f32, exact below 2^24. */
const MAX_VOCAB = 1 << 24;

/**
 * Turns each row of logits into one token id on the GPU: greedy argmax or
 * seeded top-k/top-p sampling per row (semantics in shaders/sample.wgsl).
 * One workgroup per row; a row's id does not depend on the other rows.
 */
export function encodeSample(rec: CommandRecorder, a: SampleArgs): void {
  const kernel = 'sample';
  assertPositiveInt(kernel, { rows: a.rows, vocab: a.vocab });
  if (a.vocab > MAX_VOCAB) throw new RangeError(`${kernel}: vocab must be at most ${MAX_VOCAB}, got ${a.vocab}`);
  assertFits(kernel, { logits: a.logits }, a.rows * a.vocab * 4);
  assertFits(kernel, { params: a.params }, a.rows * SAMPLE_PARAMS_BYTES);
  assertFits(kernel, { out: a.out }, a.rows * 4);
  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG: sampleWorkgroupSize(a.vocab) });
  rec.dispatch(pipeline, [a.logits, a.params, a.out], new Uniforms().u32(a.rows).u32(a.vocab), a.rows);
}
