/**
 * LLaVA's multi_modal_projector on the GPU: vision features [rows, vHidden]
 * → linear_1 → GELU → linear_2 → decoder embeddings [rows, hidden].
 */
import type { Gpu } from '../gpu/context.ts';
import { storageBuffer, uploadBuffer } from '../gpu/buffers.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import { encodeMatmul } from '../gpu/kernels/matmul.ts';
import { encodeGelu } from '../gpu/kernels/gelu.ts';
import type { CpuTensor } from './weights-cpu.ts';
import { f16BitsToF32 } from '../gpu/f16.ts';

export class LlavaProjector {
  private constructor(
    private readonly gpu: Gpu,
    private readonly w: { w1: GPUBuffer; b1: GPUBuffer; w2: GPUBuffer; b2: GPUBuffer },
    readonly inDim: number,
    readonly outDim: number,
    private readonly approximate: 'none' | 'tanh',
  ) {}

  static create(gpu: Gpu, weights: Map<string, CpuTensor>, approximate: 'none' | 'tanh'): LlavaProjector {
    const up = (name: string) => {
      const t = weights.get(`multi_modal_projector.${name}`);
      if (!t) throw new Error(`weight 'multi_modal_projector.${name}' is missing from the model files`);
      return uploadBuffer(gpu, `w:projector.${name}`, t.dtype === 'f32' ? (t.data as Float32Array) : Float32Array.from(t.data as Uint16Array, f16BitsToF32));
    };
    const [outDim, inDim] = weights.get('multi_modal_projector.linear_1.weight')!.shape;
    return new LlavaProjector(gpu, { w1: up('linear_1.weight'), b1: up('linear_1.bias'), w2: up('linear_2.weight'), b2: up('linear_2.bias') }, inDim, outDim, approximate);
  }

  /** features f32 [rows, inDim] → a new buffer f32 [rows, outDim] (the caller owns it). */
  async project(features: GPUBuffer, rows: number): Promise<GPUBuffer> {
    const h = storageBuffer(this.gpu, 'vision:projector_hidden', rows * this.outDim * 4);
    const a = storageBuffer(this.gpu, 'vision:projector_act', rows * this.outDim * 4);
    const out = storageBuffer(this.gpu, 'vision:features', rows * this.outDim * 4);
    const rec = new CommandRecorder(this.gpu, 'projector');
    encodeMatmul(rec, { x: features, w: this.w.w1, dtype: 'f32', bias: this.w.b1, out: h, m: rows, n: this.outDim, k: this.inDim });
    encodeGelu(rec, { x: h, out: a, n: rows * this.outDim, approximate: this.approximate });
    encodeMatmul(rec, { x: a, w: this.w.w2, dtype: 'f32', bias: this.w.b2, out, m: rows, n: this.outDim, k: this.outDim });
    try {
      await rec.submit();
    } finally {
      this.gpu.destroyBuffer(h);
      this.gpu.destroyBuffer(a);
    }
    return out;
  }

  destroy(): void {
    for (const b of Object.values(this.w)) this.gpu.destroyBuffer(b);
  }
}
