/**
 * The q8 / q4 matmul loaders against the TypeScript reference: random weights quantized by
 * quantize.ts, the GPU result vs matmulRef over the dequantized values (exact in f32, so the
 * tolerance is the f32 kernel's own), at odd sizes: m = 1, 3, 5, 9 (every tile), odd n, k a
 * multiple of 32, of 4 only, and of neither (rows padded to 32). Plus the quantizer itself:
 * round-trip error within half a step, zero blocks, a block with one huge value.
 */
import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { dequantize, paddedK, quantize, quantizedBytes, QUANT_BLOCK, type QuantFormat } from '../quantize.ts';
import { encodeMatmul } from './matmul.ts';
import { matmulAbsRef, matmulRef } from './matmul.ref.ts';

const U = 2 ** -24;

async function gpuVsRef(format: QuantFormat, m: number, n: number, k: number, seed: number, opts: { bias?: boolean; accumulate?: boolean } = {}): Promise<number> {
  const gpu = await testGpu();
  const r = rng(seed);
  const x = randomF32(m * k, r);
  const q = quantize(format, randomF32(n * k, r, 0.5), n, k);
  const wv = dequantize(q);
  const bias = opts.bias ? randomF32(n, r) : undefined;
  const initial = opts.accumulate ? randomF32(m * n, r, 2) : undefined;
  const bufs = { x: uploadBuffer(gpu, 'x', x), w: uploadBuffer(gpu, 'wq', q.words), s: uploadBuffer(gpu, 'scales', q.scales), b: bias ? uploadBuffer(gpu, 'bias', bias) : undefined, out: initial ? uploadBuffer(gpu, 'out', initial) : storageBuffer(gpu, 'out', m * n * 4) };
  const rec = new CommandRecorder(gpu);
  encodeMatmul(rec, { x: bufs.x, w: bufs.w, scales: bufs.s, dtype: format, out: bufs.out, m, n, k, accumulate: opts.accumulate, ...(bufs.b ? { bias: bufs.b } : {}) });
  await rec.submit();
  const got = await readF32(gpu, bufs.out, 0, m * n);
  Object.values(bufs).forEach((b) => b && gpu.destroyBuffer(b));
  const ref = matmulRef(x, wv, m, n, k, bias, initial);
  const mag = matmulAbsRef(x, wv, m, n, k, bias, initial);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / (4 * Math.sqrt(k) * U * mag[i] + U * Math.abs(ref[i]) + 1e-30);
    worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

describe('quantized matmul (q8, q4) = the reference on the dequantized weights', () => {
  let seed = 100;
  for (const format of ['q8', 'q4'] as const) {
    for (const [n, k] of [[37, 64], [45, 96], [33, 52], [41, 50], [7, 70], [65, 32]] as const) {
      for (const m of [1, 3, 5, 9]) {
        const s = seed++;
        it(`${format} m=${m} n=${n} k=${k}`, async () => {
          expect(await gpuVsRef(format, m, n, k, s)).toBeLessThanOrEqual(1);
        });
      }
    }
    it(`${format} with a bias and accumulating into out`, async () => {
      expect(await gpuVsRef(format, 5, 39, 72, seed++, { bias: true, accumulate: true })).toBeLessThanOrEqual(1);
    });
  }

  it('refuses quantized weights without scales, and scales with float weights', async () => {
    const gpu = await testGpu();
    const b = storageBuffer(gpu, 'b', 4096);
    const o = storageBuffer(gpu, 'o', 4096);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeMatmul(rec, { x: b, w: b, dtype: 'q8', out: o, m: 1, n: 4, k: 32 })).toThrow(/q8 weights need a scales buffer/);
    expect(() => encodeMatmul(rec, { x: b, w: b, scales: b, dtype: 'f32', out: o, m: 1, n: 4, k: 32 })).toThrow(/f32 weights take no scales buffer/);
    [b, o].forEach((x) => gpu.destroyBuffer(x));
  });
});

describe('the block quantizer', () => {
  for (const format of ['q8', 'q4'] as const) {
    it(`${format}: every value within half a step of its block's scale, any k`, () => {
      const r = rng(7);
      for (const [n, k] of [[3, 32], [5, 50], [2, 97]] as const) {
        const w = randomF32(n * k, r, 3);
        const q = quantize(format, w, n, k);
        const back = dequantize(q);
        const blocks = paddedK(k) / QUANT_BLOCK;
        for (let i = 0; i < w.length; i++) {
          const scale = q.scales[Math.floor(i / k) * blocks + Math.floor((i % k) / QUANT_BLOCK)];
          expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(scale / 2 + 1e-7);
        }
        expect(q.words.byteLength + q.scales.byteLength).toBe(quantizedBytes(format, n, k));
      }
    });

    it(`${format}: an all-zero block stays zero; one huge value is exact and the rest of its block rounds to its step`, () => {
      const w = new Float32Array(64);
      w[40] = 1000;
      w[41] = 0.5;
      const back = dequantize(quantize(format, w, 1, 64));
      expect(Array.from(back.slice(0, 32))).toEqual(new Array(32).fill(0));
      expect(back[40]).toBe(1000);
      expect(Math.abs(back[41] - 0.5)).toBeLessThanOrEqual(1000 / (format === 'q8' ? 127 : 7) / 2);
    });
  }
});
