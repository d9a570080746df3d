import source from '../../../shaders/add.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits } from './guards.ts';

export interface AddArgs {
  a: GPUBuffer;
  b: GPUBuffer;
  /** Destination; omit to add b into a in place. */
  out?: GPUBuffer;
  n: number;
}

const WG = 256;

export function encodeAdd(rec: CommandRecorder, { a, b, out, n }: AddArgs): void {
  assertFits('add', { a, b, ...(out ? { out } : {}) }, n * 4);
  const pipeline = rec.gpu.pipelines.get('add', source, { WG }, out ? 'main' : 'main_inplace');
  rec.dispatch(pipeline, out ? [a, b, out] : [a, b], new Uniforms().u32(n), Math.ceil(n / WG));
}
