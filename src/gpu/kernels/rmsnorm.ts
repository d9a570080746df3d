import source from '../../../shaders/rmsnorm.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

export interface RmsNormArgs {
  /** [rows, dim] f32. */
  x: GPUBuffer;
  /** [dim] f32. */
  weight: GPUBuffer;
  /** [rows, dim] f32; may be `x` itself (normalized in place). */
  out: GPUBuffer;
  rows: number;
  dim: number;
  eps: number;
}

const WG = 64;

/** out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. */
export function encodeRmsNorm(rec: CommandRecorder, a: RmsNormArgs): void {
  const { x, weight, out, rows, dim, eps } = a;
  assertPositiveInt('rmsnorm', { rows, dim });
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`rmsnorm: eps must be a finite number >= 0, got ${eps}`);
  if (weight === out) throw new RangeError('rmsnorm: out must not be the weight');
  assertFits('rmsnorm', { x, out }, rows * dim * 4);
  assertFits('rmsnorm', { weight }, dim * 4);
  const inplace = out === x;
  const pipeline = rec.gpu.pipelines.get('rmsnorm', source, { WG }, inplace ? 'main_inplace' : 'main');
  rec.dispatch(pipeline, inplace ? [x, weight] : [x, weight, out], new Uniforms().u32(rows).u32(dim).f32(eps), Math.ceil(rows / WG));
}
