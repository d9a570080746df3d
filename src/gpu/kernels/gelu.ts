import source from '../../../shaders/gelu.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

/** 'none': exact erf GELU (torch.nn.GELU(), HF "gelu"); 'tanh': HF "gelu_pytorch_tanh" / "gelu_new". */
export type GeluApproximate = 'none' | 'tanh';

export interface GeluArgs {
  /** [n] f32 input. */
  x: GPUBuffer;
  /** [n] f32 output; a different buffer from x. */
  out: GPUBuffer;
  /** Element count. */
  n: number;
  /** Defaults to 'none' (exact erf). */
  approximate?: GeluApproximate;
}

const WG = 256;

/** out[i] = gelu(x[i]) for i < n, exact (erf) or tanh-approximated. */
export function encodeGelu(rec: CommandRecorder, a: GeluArgs): void {
  const { x, out, n, approximate = 'none' } = a;
  assertPositiveInt('gelu', { n });
  if (approximate !== 'none' && approximate !== 'tanh') {
    throw new RangeError(`gelu: approximate must be 'none' or 'tanh', got ${String(approximate)}`);
  }
  if (x === out) throw new RangeError('gelu: out must not be x (WebGPU forbids aliasing a writable binding)');
  assertFits('gelu', { x, out }, n * 4);
  const pipeline = rec.gpu.pipelines.get('gelu', source, { WG, TANH: approximate === 'tanh' ? 1 : 0 });
  rec.dispatch(pipeline, [x, out], new Uniforms().u32(n), Math.ceil(n / WG));
}
