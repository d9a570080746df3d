import source from '../../../shaders/copy.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

export interface CopyArgs {
  src: GPUBuffer;
  dst: GPUBuffer;
  /** Number of u32 words to copy from the start of src to the start of dst. */
  words: number;
}

const WG = 256;

/**
 * dst[i] = src[i] over `words` u32 words, by a compute kernel (vec4 loads for
 * all but the last words % 4): a bandwidth probe for the decode roofline,
 * not a replacement for copyBufferToBuffer.
 */
export function encodeCopy(rec: CommandRecorder, a: CopyArgs): void {
  const { src, dst, words } = a;
  assertPositiveInt('copy', { words });
  if (src === dst) throw new RangeError('copy: src and dst must be different buffers');
  assertFits('copy', { src, dst }, words * 4);
  const vec4s = Math.floor(words / 4);
  const tail = words - vec4s * 4;
  if (vec4s > 0) {
    const pipeline = rec.gpu.pipelines.get('copy', source, { WG }, 'main_vec4');
    rec.dispatch(pipeline, [src, dst], new Uniforms().u32(words).u32(0), Math.ceil(vec4s / WG));
  }
  if (tail > 0) {
    const pipeline = rec.gpu.pipelines.get('copy', source, { WG }, 'main_tail');
    rec.dispatch(pipeline, [src, dst], new Uniforms().u32(words).u32(vec4s * 4), 1);
  }
}
