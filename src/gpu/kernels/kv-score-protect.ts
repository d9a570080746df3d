import source from '../../../shaders/kv_score_protect.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

export interface KvScoreProtectArgs {
  scores: GPUBuffer; // f32 [numKvHeads, numTokens], in place
  numKvHeads: number;
  numTokens: number;
  /** The compressible region [start, end); every other token gets a score no eviction reaches. */
  start: number;
  end: number;
}

const WG = 256;

export function encodeKvScoreProtect(rec: CommandRecorder, a: KvScoreProtectArgs): void {
  assertPositiveInt('kv_score_protect', { numKvHeads: a.numKvHeads, numTokens: a.numTokens });
  if (!(Number.isInteger(a.start) && Number.isInteger(a.end) && 0 <= a.start && a.start <= a.end && a.end <= a.numTokens)) {
    throw new RangeError(`kv_score_protect: region [${a.start}, ${a.end}) must lie within 0..${a.numTokens}`);
  }
  const total = a.numKvHeads * a.numTokens;
  assertFits('kv_score_protect', { scores: a.scores }, total * 4);
  const pipeline = rec.gpu.pipelines.get('kv_score_protect', source, { WG });
  rec.dispatch(pipeline, [a.scores], new Uniforms().u32(a.numTokens).u32(total).u32(a.start).u32(a.end), Math.ceil(total / WG));
}
