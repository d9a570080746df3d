import source from '../../../shaders/silu_mul.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

export interface SiluMulArgs {
  /** [n, 2f] f32: gate in the first half of each row, up in the second. */
  gateUp: GPUBuffer;
  /** [n, f] f32. */
  out: GPUBuffer;
  n: number;
  f: number;
}

const WG = 256;

/** out[r, j] = silu(gateUp[r, j]) * gateUp[r, f + j] for j < f. */
export function encodeSiluMul(rec: CommandRecorder, a: SiluMulArgs): void {
  const { gateUp, out, n, f } = a;
  assertPositiveInt('siluMul', { n, f });
  if (gateUp === out) throw new RangeError('siluMul: out must not be gateUp (WebGPU forbids aliasing a writable binding)');
  assertFits('siluMul', { gateUp }, n * 2 * f * 4);
  assertFits('siluMul', { out }, n * f * 4);
  const pipeline = rec.gpu.pipelines.get('silu_mul', source, { WG });
  rec.dispatch(pipeline, [gateUp, out], new Uniforms().u32(n).u32(f), Math.ceil((n * f) / WG));
}
