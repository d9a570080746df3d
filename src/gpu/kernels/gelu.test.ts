import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import type { Gpu } from '../context.ts';
import { encodeGelu, type GeluApproximate } from './gelu.ts';
import { geluRef } from './gelu.ref.ts';

/**
 * Tolerance, per element: |got - ref| <= TOL * max(1, |x|), ref in f64.
 * Measured on SwiftShader (Node and Chromium) over a dense grid x in [-25, 25]:
 * max |got - ref| / max(1, |x|) = 1.2e-7 (erf) and 1.4e-7 (tanh), i.e. about
 * 1 f32 ulp; the largest absolute error is 2.4e-7 (erf) / 5.2e-7 (tanh), at
 * x near 20. In the left tail the relative error grows with exp's
 * 3 + 2|arg| ulp, to ~1e-5 at x = -9.5 where |gelu| ~ 1e-20. The erfc fit
 * alone is < 1.2e-7 relative. TOL leaves ~7x margin for other drivers' exp.
 */
const TOL = 1e-6;

async function runGelu(gpu: Gpu, x: Float32Array, approximate: GeluApproximate): Promise<Float32Array> {
  const xb = uploadBuffer(gpu, 'x', x), ob = storageBuffer(gpu, 'out', x.length * 4);
  const rec = new CommandRecorder(gpu);
  encodeGelu(rec, { x: xb, out: ob, n: x.length, approximate });
  await rec.submit();
  const got = await readF32(gpu, ob);
  [xb, ob].forEach((b) => gpu.destroyBuffer(b));
  return got;
}

/** Largest |got - ref| / max(1, |x|). */
function maxScaledErr(x: Float32Array, got: Float32Array, ref: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / Math.max(1, Math.abs(x[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

describe('gelu kernel', () => {
  for (const approximate of ['none', 'tanh'] as const) {
    for (const n of [1, 7, 1000, 65537]) {
      it(`matches the reference: approximate=${approximate} n=${n}`, async () => {
        const gpu = await testGpu();
        const r = rng(n * 3 + (approximate === 'tanh' ? 1 : 0));
        // Half the elements in [-20, 20], half in [-4, 4] where the curve bends; every 17th is zero.
        const x = randomF32(n, r, 20);
        for (let i = 0; i < n; i++) {
          if (i % 2 === 1) x[i] /= 5;
          if (i % 17 === 3) x[i] = 0;
        }
        const got = await runGelu(gpu, x, approximate);
        const err = maxScaledErr(x, got, geluRef(x, approximate));
        expect(err).toBeLessThanOrEqual(TOL);
      });
    }
  }

  it('computes hand-checked values', async () => {
    const gpu = await testGpu();
    // gelu(±1) from the f64 formulas; far tails are exactly x and -0 (true values within 1e-80 |x|).
    const x = new Float32Array([1, -1, 0, 30, -30, 1e30, -1e30]);
    const exact = await runGelu(gpu, x, 'none');
    expect(exact[0]).toBeCloseTo(0.8413447460685429, 6);
    expect(exact[1]).toBeCloseTo(-0.15865525393145707, 6);
    expect(exact[2]).toBe(0);
    expect(exact[3]).toBe(30);
    expect(Math.abs(exact[4])).toBe(0);
    expect(exact[5]).toBe(Math.fround(1e30));
    expect(Math.abs(exact[6])).toBe(0);
    const tanh = await runGelu(gpu, x, 'tanh');
    expect(tanh[0]).toBeCloseTo(0.8411919906082768, 6);
    expect(tanh[1]).toBeCloseTo(0.8411919906082768 - 1, 6); // gelu(-x) = gelu(x) - x
    expect(tanh[2]).toBe(0);
    expect(tanh[3]).toBe(30);
    expect(Math.abs(tanh[4])).toBe(0);
    expect(tanh[5]).toBe(Math.fround(1e30));
    expect(Math.abs(tanh[6])).toBe(0);
  });

  it('is elementwise: an element does not depend on n or its neighbours', async () => {
    const gpu = await testGpu();
    const x = randomF32(513, rng(99), 6);
    const whole = await runGelu(gpu, x, 'none');
    const one = await runGelu(gpu, x.slice(300, 301), 'none');
    expect(one[0]).toBe(whole[300]);
  });

  it('rejects bad shapes', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 64), b = storageBuffer(gpu, 'b', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeGelu(rec, { x: a, out: b, n: 0 })).toThrow(RangeError);
    expect(() => encodeGelu(rec, { x: a, out: b, n: 0 })).toThrow(/n must be a positive integer/);
    expect(() => encodeGelu(rec, { x: a, out: b, n: 17 })).toThrow(/'x' holds 64 bytes but the call needs 68/);
    const big = storageBuffer(gpu, 'big', 128);
    expect(() => encodeGelu(rec, { x: big, out: b, n: 20 })).toThrow(/'out' holds 64 bytes/);
    expect(() => encodeGelu(rec, { x: a, out: a, n: 4 })).toThrow(/out must not be x/);
    expect(() => encodeGelu(rec, { x: a, out: b, n: 4, approximate: 'erf' as GeluApproximate })).toThrow(/approximate must be/);
    [a, b, big].forEach((x) => gpu.destroyBuffer(x));
  });
});
