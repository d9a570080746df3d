import { randomF32 } from './gpu.ts';
import type { Gpu } from '../src/gpu/context.ts';
import { uploadBuffer } from '../src/gpu/buffers.ts';
import type { ScoreRefSeq } from '../src/gpu/kernels/kv-score.ref.ts';
import type { KvGeometry } from '../src/gpu/kv-layout.ts';
import { encodeKvPool, kvImagePageElems, kvWriteRef } from '../src/gpu/kernels/kv-write.ref.ts';

/** A test sequence in a paged pool: the contiguous K/V the references read, and the GPU buffers the kernels read. */
export interface ScoreFixture {
  seq: ScoreRefSeq;
  pool: GPUBuffer;
  blockTable: GPUBuffer;
  destroy(): void;
}

/**
 * One sequence of `numTokens` tokens written (through the kv_write
 * reference) onto shuffled, non-contiguous pages of a pool with two spare
 * pages; every slot the sequence does not own holds NaN, so reading past it
 * shows up in the scores. K and V come from `kv` when given, else random.
 */
export function buildScoreFixture(gpu: Gpu, g: KvGeometry, numTokens: number, rand: () => number, kv?: { k: Float32Array; v: Float32Array }): ScoreFixture {
  const numPagesSeq = Math.ceil(numTokens / g.pageSize);
  const numPages = numPagesSeq + 2;
  const order = Array.from({ length: numPages }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const table = order.slice(0, numPagesSeq);
  const span = g.numKvHeads * g.headDim;
  const k = kv?.k ?? randomF32(numTokens * span, rand);
  const v = kv?.v ?? randomF32(numTokens * span, rand);
  const src = new Float32Array(numTokens * 2 * span);
  for (let t = 0; t < numTokens; t++) {
    src.set(k.subarray(t * span, (t + 1) * span), t * 2 * span);
    src.set(v.subarray(t * span, (t + 1) * span), t * 2 * span + span);
  }
  const image = new Float32Array(numPages * kvImagePageElems(g)).fill(NaN);
  const slots = Uint32Array.from({ length: numTokens }, (_, t) => table[Math.floor(t / g.pageSize)] * g.pageSize + (t % g.pageSize));
  kvWriteRef(image, src, slots, { ...g, n: numTokens, rowStride: 2 * span, kOffset: 0, vOffset: span });
  const pool = uploadBuffer(gpu, 'test:kv-score-pool', encodeKvPool(image, g));
  const blockTable = uploadBuffer(gpu, 'test:kv-score-table', Uint32Array.from(table));
  return {
    seq: { k, v, numTokens, numKvHeads: g.numKvHeads, headDim: g.headDim, dtype: g.dtype },
    pool,
    blockTable,
    destroy: () => [pool, blockTable].forEach((b) => gpu.destroyBuffer(b)),
  };
}
