import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32, maxRelErr } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeSiluMul } from './silu-mul.ts';
import { siluMulRef } from './silu-mul.ref.ts';

/**
 * Tolerance: Vulkan's exp is within 3 + 2|x| ulp, so for gates in [-12, 12]
 * silu carries up to ~30 ulp (~2e-6 relative), plus the division and the
 * product: |got - ref| <= 1e-7 + 4e-6 |ref|.
 */
const ATOL = 1e-7, RTOL = 4e-6;

describe('silu-mul kernel', () => {
  for (const [n, f] of [[1, 1], [3, 17], [64, 1536], [5, 70001]]) {
    it(`matches the reference: n=${n} f=${f}`, async () => {
      const gpu = await testGpu();
      const r = rng(n * 7 + f);
      const gateUp = randomF32(n * 2 * f, r, 12);
      const g = uploadBuffer(gpu, 'gateUp', gateUp), o = storageBuffer(gpu, 'out', n * f * 4);
      const rec = new CommandRecorder(gpu);
      encodeSiluMul(rec, { gateUp: g, out: o, n, f });
      await rec.submit();
      expect(maxRelErr(await readF32(gpu, o), siluMulRef(gateUp, n, f), ATOL, RTOL)).toBeLessThanOrEqual(1);
      [g, o].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('computes hand-checked values, including large gates', async () => {
    const gpu = await testGpu();
    // rows of [g0, g1, g2, g3 | u0, u1, u2, u3]: silu(0) = 0, silu(100) = 100, silu(-100) = -0, silu(1) = 1/(1+1/e)
    const gateUp = new Float32Array([0, 100, -100, 1, 5, 2, 7, 3]);
    const g = uploadBuffer(gpu, 'gateUp', gateUp), o = storageBuffer(gpu, 'out', 16);
    const rec = new CommandRecorder(gpu);
    encodeSiluMul(rec, { gateUp: g, out: o, n: 1, f: 4 });
    await rec.submit();
    const got = Array.from(await readF32(gpu, o));
    expect(got[0]).toBe(0);
    expect(got[1]).toBe(200);
    expect(Math.abs(got[2])).toBe(0);
    expect(got[3]).toBeCloseTo(3 / (1 + Math.exp(-1)), 6);
    [g, o].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects bad shapes', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 64), b = storageBuffer(gpu, 'b', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeSiluMul(rec, { gateUp: a, out: b, n: 1, f: 9 })).toThrow(/'gateUp' holds 64 bytes/);
    expect(() => encodeSiluMul(rec, { gateUp: a, out: a, n: 1, f: 2 })).toThrow(/must not be/);
    [a, b].forEach((x) => gpu.destroyBuffer(x));
  });
});
