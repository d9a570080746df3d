import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeRmsNorm } from './rmsnorm.ts';
import { rmsNormRef } from './rmsnorm.ref.ts';

/**
 * Tolerance, relative to each output: the f32 sum of dim squares (positive
 * terms: relative error about sqrt(dim) * u for random data, u = 2^-24),
 * halved by the square root, plus a few ulp for inverseSqrt (2 ulp in
 * Vulkan) and the two products:  |got - ref| <= (8 + 2 sqrt(dim)) u |ref| + 1e-30.
 */
const U = 2 ** -24;
function worst(got: Float32Array, ref: Float32Array, dim: number): number {
  let w = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / ((8 + 2 * Math.sqrt(dim)) * U * Math.abs(ref[i]) + 1e-30);
    if (!(e <= w)) w = Number.isNaN(e) ? Infinity : e;
  }
  return w;
}

describe('rmsnorm kernel', () => {
  const cases: [number, number, number][] = [[1, 7, 1e-5], [3, 64, 1e-6], [64, 576, 1e-5], [130, 2049, 1e-6]];
  for (const [rows, dim, eps] of cases) {
    it(`matches the reference: rows=${rows} dim=${dim} eps=${eps}, out of place and in place`, async () => {
      const gpu = await testGpu();
      const r = rng(rows + dim);
      const x = randomF32(rows * dim, r, 3);
      const weight = randomF32(dim, r, 2);
      const gx = uploadBuffer(gpu, 'x', x), gw = uploadBuffer(gpu, 'w', weight), go = storageBuffer(gpu, 'o', x.byteLength);
      const rec = new CommandRecorder(gpu);
      encodeRmsNorm(rec, { x: gx, weight: gw, out: go, rows, dim, eps });
      await rec.submit();
      const got = await readF32(gpu, go);
      const rec2 = new CommandRecorder(gpu);
      encodeRmsNorm(rec2, { x: gx, weight: gw, out: gx, rows, dim, eps });
      await rec2.submit();
      expect(worst(got, rmsNormRef(x, weight, rows, dim, eps), dim)).toBeLessThanOrEqual(1);
      const inplace = await readF32(gpu, gx);
      expect(inplace.findIndex((v, i) => !Object.is(v, got[i]))).toBe(-1); // in place gives the same bits
      [gx, gw, go].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('normalizes a hand-checked row', async () => {
    const gpu = await testGpu();
    // x = [3, 4, 0, 0]: mean square 6.25, rms 2.5 -> x / 2.5 = [1.2, 1.6, 0, 0], times weight [1, -2, 5, 1]
    const gx = uploadBuffer(gpu, 'x', new Float32Array([3, 4, 0, 0]));
    const gw = uploadBuffer(gpu, 'w', new Float32Array([1, -2, 5, 1]));
    const go = storageBuffer(gpu, 'o', 16);
    const rec = new CommandRecorder(gpu);
    encodeRmsNorm(rec, { x: gx, weight: gw, out: go, rows: 1, dim: 4, eps: 0 });
    await rec.submit();
    const got = Array.from(await readF32(gpu, go));
    [1.2, -3.2, 0, 0].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    [gx, gw, go].forEach((b) => gpu.destroyBuffer(b));
  });

  it('is batch invariant: a row alone equals the same row among others', async () => {
    const gpu = await testGpu();
    const [rows, dim] = [20, 96];
    const r = rng(5);
    const x = randomF32(rows * dim, r, 3), weight = randomF32(dim, r);
    const gx = uploadBuffer(gpu, 'x', x), gw = uploadBuffer(gpu, 'w', weight), go = storageBuffer(gpu, 'o', x.byteLength);
    const row = uploadBuffer(gpu, 'row', x.subarray(13 * dim, 14 * dim)), ro = storageBuffer(gpu, 'ro', dim * 4);
    const rec = new CommandRecorder(gpu);
    encodeRmsNorm(rec, { x: gx, weight: gw, out: go, rows, dim, eps: 1e-5 });
    encodeRmsNorm(rec, { x: row, weight: gw, out: ro, rows: 1, dim, eps: 1e-5 });
    await rec.submit();
    expect((await readF32(gpu, go)).subarray(13 * dim, 14 * dim)).toEqual(await readF32(gpu, ro));
    [gx, gw, go, row, ro].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects bad shapes', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 64), w = storageBuffer(gpu, 'w', 16);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeRmsNorm(rec, { x: a, weight: w, out: a, rows: 2, dim: 8, eps: 1e-5 })).toThrow(/'weight' holds 16 bytes/);
    expect(() => encodeRmsNorm(rec, { x: a, weight: w, out: a, rows: 5, dim: 4, eps: 1e-5 })).toThrow(/'x' holds 64 bytes/);
    expect(() => encodeRmsNorm(rec, { x: a, weight: w, out: a, rows: 1, dim: 4, eps: -1 })).toThrow(/eps/);
    [a, w].forEach((x) => gpu.destroyBuffer(x));
  });
});
