import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeRope, ropeCosSinTable, ropeInvFreq, type RopeScaling } from './rope.ts';
import { ropeRef } from './rope.ref.ts';

/**
 * A transcription of transformers' `_compute_llama3_parameters`
 * (modeling_rope_utils.py), vectorised as there with torch.where, in f64:
 *   low_freq_wavelen = old_context_len / low_freq_factor
 *   high_freq_wavelen = old_context_len / high_freq_factor
 *   wavelen = 2 * math.pi / inv_freq
 *   inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
 *   smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
 *   smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
 *   is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
 *   inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
 */
function hfLlama3(base: number, dim: number, factor: number, lowFreqFactor: number, highFreqFactor: number, oldContextLen: number): number[] {
  const invFreq = Array.from({ length: dim / 2 }, (_, j) => 1.0 / base ** ((2 * j) / dim));
  const lowFreqWavelen = oldContextLen / lowFreqFactor;
  const highFreqWavelen = oldContextLen / highFreqFactor;
  const wavelen = invFreq.map((f) => (2 * Math.PI) / f);
  let invFreqLlama = invFreq.map((f, j) => (wavelen[j] > lowFreqWavelen ? f / factor : f));
  const smoothFactor = wavelen.map((w) => (oldContextLen / w - lowFreqFactor) / (highFreqFactor - lowFreqFactor));
  const smoothed = invFreqLlama.map((f, j) => ((1 - smoothFactor[j]) * f) / factor + smoothFactor[j] * f);
  const isMedium = wavelen.map((w) => !(w < highFreqWavelen) && !(w > lowFreqWavelen));
  invFreqLlama = invFreqLlama.map((f, j) => (isMedium[j] ? smoothed[j] : f));
  return invFreqLlama;
}

const llama31: RopeScaling = { ropeType: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
const llama32: RopeScaling = { ropeType: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

describe('rope frequencies and table', () => {
  it('default: inv[i] = 1 / theta^(2i/D), hand-checked for D=8, theta=1e4', () => {
    const inv = ropeInvFreq(8, 1e4);
    [1, 0.1, 0.01, 0.001].forEach((v, i) => expect(inv[i]).toBeCloseTo(v, 15));
    const inv5 = ropeInvFreq(64, 1e5);
    for (let i = 0; i < 32; i++) expect(Math.abs(inv5[i] / (1 / 1e5 ** (i / 32)) - 1)).toBeLessThan(1e-15);
  });

  it('linear divides every frequency by the factor', () => {
    const a = ropeInvFreq(64, 1e4), b = ropeInvFreq(64, 1e4, { ropeType: 'linear', factor: 4 });
    for (let i = 0; i < 32; i++) expect(b[i]).toBe(a[i] / 4);
  });

  it('llama3 matches the transcription of HF _compute_llama3_parameters', () => {
    for (const [theta, d, s] of [[5e5, 128, llama31], [5e5, 64, llama32], [1e4, 256, llama31]] as const) {
      const got = ropeInvFreq(d, theta, s);
      const want = hfLlama3(theta, d, s.factor!, s.lowFreqFactor!, s.highFreqFactor!, s.originalMaxPositionEmbeddings!);
      expect(Array.from(got)).toEqual(want); // the same f64 operations, so the same bits
    }
    // Llama 3.1, D=128: the highest frequency is kept, the lowest divided by 8, and some are blended.
    const inv = ropeInvFreq(128, 5e5, llama31), plain = ropeInvFreq(128, 5e5);
    expect(inv[0]).toBe(1);
    expect(inv[63]).toBe(plain[63] / 8);
    const blended = Array.from(inv).filter((v, i) => v !== plain[i] && v !== plain[i] / 8);
    expect(blended.length).toBeGreaterThan(0);
    expect(() => ropeInvFreq(128, 5e5, { ropeType: 'llama3', factor: 8 })).toThrow(/lowFreqFactor/);
  });

  it('tabulates cos then sin, row per position, rounded from f64', () => {
    const inv = ropeInvFreq(8, 1e4);
    const t = ropeCosSinTable(inv, 10);
    expect(t.length).toBe(2 * 10 * 4);
    expect(Array.from(t.subarray(0, 4))).toEqual([1, 1, 1, 1]); // cos at position 0
    expect(Array.from(t.subarray(40, 44))).toEqual([0, 0, 0, 0]); // sin at position 0
    expect(t[7 * 4 + 1]).toBe(Math.fround(Math.cos(7 * 0.1)));
    expect(t[(10 + 9) * 4 + 2]).toBe(Math.fround(Math.sin(9 * inv[2])));
  });
});

/**
 * Tolerance: the GPU computes x1*c - x2*s in f32 (two roundings of products,
 * one of the difference, or a fused multiply-add) against f64 from the same
 * table values, so |got - ref| <= 4u (|x1 c| + |x2 s|) <= 8u max|x|, u = 2^-24.
 */
const U = 2 ** -24;
const XMAX = 2; // inputs are uniform in [-XMAX, XMAX]

describe('rope kernel', () => {
  const cases = [
    { headDim: 8, numHeads: 3, n: 5, maxPositions: 16, theta: 1e4, scaling: undefined, extra: 0 },
    { headDim: 64, numHeads: 5, n: 7, maxPositions: 300, theta: 1e5, scaling: undefined, extra: 2 },
    { headDim: 128, numHeads: 3, n: 4, maxPositions: 9000, theta: 5e5, scaling: llama31, extra: 1 },
    { headDim: 256, numHeads: 1, n: 3, maxPositions: 64, theta: 1e4, scaling: undefined, extra: 1 },
  ];
  for (const c of cases) {
    it(`matches the reference: D=${c.headDim} heads=${c.numHeads} n=${c.n} theta=${c.theta}${c.scaling ? ' llama3' : ''}`, async () => {
      const gpu = await testGpu();
      const r = rng(c.headDim + c.numHeads);
      // Rows as in a fused QKV buffer: `extra` heads before and after the rotated ones stay untouched.
      const headOffset = c.extra * c.headDim + 3;
      const rowStride = headOffset + (c.numHeads + c.extra) * c.headDim + 1;
      const x = randomF32(c.n * rowStride, r, XMAX);
      const positions = Uint32Array.from({ length: c.n }, () => Math.floor(r() * c.maxPositions));
      positions[0] = c.maxPositions - 1;
      positions[c.n - 1] = 0;
      const cosSin = ropeCosSinTable(ropeInvFreq(c.headDim, c.theta, c.scaling), c.maxPositions);
      const gx = uploadBuffer(gpu, 'x', x), gp = uploadBuffer(gpu, 'pos', positions), gt = uploadBuffer(gpu, 'cs', cosSin);
      const args = { numHeads: c.numHeads, headDim: c.headDim, rowStride, headOffset, maxPositions: c.maxPositions };
      const rec = new CommandRecorder(gpu);
      encodeRope(rec, { x: gx, positions: gp, cosSin: gt, n: c.n, ...args });
      await rec.submit();
      const got = await readF32(gpu, gx);
      const want = ropeRef(x, { positions, cosSin, ...args });
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (8 * U * XMAX));
      expect(worst).toBeLessThanOrEqual(1);
      const inHeads = (i: number) => { const e = i % rowStride; return e >= headOffset && e < headOffset + c.numHeads * c.headDim; };
      for (let i = 0; i < x.length; i++) if (!inHeads(i)) expect(got[i]).toBe(x[i]);
      [gx, gp, gt].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('rotates a hand-checked pair by 90 degrees', async () => {
    const gpu = await testGpu();
    // D = 2, table for 2 positions: cos = [1, 0], sin = [0, 1]; x = [3, 4] at position 1 -> [-4, 3]; [5, 6] at position 0 stays
    const gx = uploadBuffer(gpu, 'x', new Float32Array([3, 4, 5, 6]));
    const gp = uploadBuffer(gpu, 'p', new Uint32Array([1, 0]));
    const gt = uploadBuffer(gpu, 't', new Float32Array([1, 0, 0, 1]));
    const rec = new CommandRecorder(gpu);
    encodeRope(rec, { x: gx, positions: gp, cosSin: gt, n: 2, numHeads: 1, headDim: 2, rowStride: 2, headOffset: 0, maxPositions: 2 });
    await rec.submit();
    expect(Array.from(await readF32(gpu, gx))).toEqual([-4, 3, 5, 6]);
    [gx, gp, gt].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects heads that do not fit a row and odd head dims', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 1024), p = storageBuffer(gpu, 'p', 64), t = storageBuffer(gpu, 't', 1024);
    const rec = new CommandRecorder(gpu);
    const base = { x: a, positions: p, cosSin: t, n: 1, numHeads: 2, headDim: 8, rowStride: 16, headOffset: 0, maxPositions: 4 };
    expect(() => encodeRope(rec, { ...base, headOffset: 1 })).toThrow(/do not fit/);
    expect(() => encodeRope(rec, { ...base, headDim: 7, rowStride: 20 })).toThrow(/even/);
    expect(() => encodeRope(rec, { ...base, maxPositions: 100 })).toThrow(/'cosSin' holds 1024 bytes/);
    [a, p, t].forEach((b) => gpu.destroyBuffer(b));
  });
});
