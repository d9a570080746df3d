import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import type { Gpu } from '../context.ts';
import { uploadBuffer, storageBuffer, readU32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeSample, packSamplingParams, type SamplingParams } from './sample.ts';
import { sampleRef, sampleRng, sampleWeight } from './sample.ref.ts';
import { rowParams } from './sample-params.ts';

type Row = { params: SamplingParams; step: number };

/** Samples `rows.length` rows of `logits` ([rows, vocab]) on the GPU. */
async function sampleGpu(gpu: Gpu, logits: Float32Array, vocab: number, rows: Row[]): Promise<number[]> {
  const gl = uploadBuffer(gpu, 'logits', logits);
  const gp = uploadBuffer(gpu, 'params', new Uint8Array(packSamplingParams(rows)));
  const go = storageBuffer(gpu, 'out', rows.length * 4);
  const rec = new CommandRecorder(gpu, 'sample');
  encodeSample(rec, { logits: gl, params: gp, out: go, rows: rows.length, vocab });
  await rec.submit();
  const out = Array.from(await readU32(gpu, go));
  [gl, gp, go].forEach((b) => gpu.destroyBuffer(b));
  return out;
}

function refAll(logits: Float32Array, vocab: number, rows: Row[]): number[] {
  return rows.map((r, i) => sampleRef(logits.subarray(i * vocab, (i + 1) * vocab), r.params, r.step));
}

/** Lowest index of the largest value, by plain float comparison. */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Random logits with ties: some tokens copy the row max, some copy another token. */
function logitsWithTies(rows: number, vocab: number, seed: number, scale = 4): Float32Array {
  const r = rng(seed);
  const l = randomF32(rows * vocab, r, scale);
  for (let row = 0; row < rows; row++) {
    const x = l.subarray(row * vocab, (row + 1) * vocab);
    const ties = Math.max(1, Math.floor(vocab / 50));
    for (let t = 0; t < ties; t++) x[Math.floor(r() * vocab)] = x[Math.floor(r() * vocab)];
    if (vocab > 2) {
      x[Math.floor(r() * vocab)] = x[argmax(x)]; // a tie at the max, before or after it
      x[Math.floor(r() * vocab)] = -1e30; // a masked token
    }
  }
  return l;
}

const greedy: SamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 0 };

describe('sample kernel', () => {
  for (const vocab of [7, 511, 49280]) {
    it(`greedy is the exact argmax, ties to the lowest index (vocab ${vocab}, rows 1..5)`, async () => {
      const gpu = await testGpu();
      for (let rows = 1; rows <= 5; rows++) {
        const l = logitsWithTies(rows, vocab, vocab * 10 + rows);
        const want = Array.from({ length: rows }, (_, i) => argmax(l.subarray(i * vocab, (i + 1) * vocab)));
        const rs = Array.from({ length: rows }, (_, i) => ({ params: { ...greedy, temperature: -i }, step: i }));
        expect(await sampleGpu(gpu, l, vocab, rs)).toEqual(want);
        expect(refAll(l, vocab, rs)).toEqual(want);
      }
    });
  }

  it('greedy picks the first of tied maxima, -0 ties +0', async () => {
    const gpu = await testGpu();
    const l = new Float32Array([1, 3, 3, 2, /* row 2 */ -1, -0, 0, -2]);
    expect(await sampleGpu(gpu, l, 4, [{ params: greedy, step: 0 }, { params: greedy, step: 0 }])).toEqual([1, 1]);
  });

  // Every id the GPU draws must be the reference's: same integer exp, same f32
  // sums in the same order, same counter-based rng. No mismatch is allowed.
  const combos: [number, number][] = [[7, 48], [300, 48], [1001, 32], [4099, 12], [49280, 5]];
  for (const [vocab, rows] of combos) {
    it(`seeded sampling equals sampleRef (vocab ${vocab}, ${rows} random parameter sets)`, async () => {
      const gpu = await testGpu();
      const r = rng(vocab);
      const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
      const rs: Row[] = Array.from({ length: rows }, () => ({
        params: {
          temperature: pick([0.05, 0.3, 0.7, 1, 1.5, 3]),
          topK: pick([0, 0, 1, 2, 7, 40, 300, vocab, vocab + 5]),
          topP: pick([1, 1, 0.95, 0.9, 0.5, 0.1, 1e-4]),
          seed: Math.floor(r() * 2 ** 32),
        },
        step: Math.floor(r() * 10_000),
      }));
      const l = logitsWithTies(rows, vocab, vocab + 1, pick([1, 4, 12]));
      const got = await sampleGpu(gpu, l, vocab, rs);
      expect(got).toEqual(refAll(l, vocab, rs));
    });
  }

  it('agrees with sampleRef on draws that sit within a few ulps of a token boundary', async () => {
    // A plain index-order sum of the same weights picks another token on these
    // steps: only the exact summation order of the kernel gets them right.
    const gpu = await testGpu();
    const vocab = 4099;
    const row = randomF32(vocab, rng(31), 2);
    const params: SamplingParams = { temperature: 1, topK: 0, topP: 1, seed: 4242 };
    const steps: number[] = [];
    for (let step = 0; step < 3000 && steps.length < 3; step++) {
      if (naiveSample(row, params, step) !== sampleRef(row, params, step)) steps.push(step);
    }
    expect(steps.length).toBeGreaterThan(0);
    const rs = steps.map((step) => ({ params, step }));
    const l = new Float32Array(steps.length * vocab);
    steps.forEach((_, i) => l.set(row, i * vocab));
    expect(await sampleGpu(gpu, l, vocab, rs)).toEqual(refAll(l, vocab, rs));
  });

  for (const vocab of [511, 49280]) {
    it(`topK = 1 and a tiny topP are greedy (vocab ${vocab})`, async () => {
      const gpu = await testGpu();
      const rows = 6;
      const l = randomF32(rows * vocab, rng(vocab + 2), 3);
      const rs: Row[] = Array.from({ length: rows }, (_, i) => ({
        params: i % 2 ? { temperature: 0.5 + i, topK: 1, topP: 1, seed: i } : { temperature: 0.5 + i, topK: 0, topP: 1e-7, seed: i },
        step: 7 * i,
      }));
      const want = Array.from({ length: rows }, (_, i) => argmax(l.subarray(i * vocab, (i + 1) * vocab)));
      expect(await sampleGpu(gpu, l, vocab, rs)).toEqual(want);
    });
  }

  it('a fixed case: top-k keeps ties, draws stay in the kept set', async () => {
    const gpu = await testGpu();
    const row = [1, 3, 3, 2];
    const steps = 64;
    const cases: [SamplingParams, number[]][] = [
      [{ temperature: 1, topK: 1, topP: 1, seed: 5 }, [1, 2]], // k-th largest is 3: both 3s kept
      [{ temperature: 1, topK: 2, topP: 1, seed: 5 }, [1, 2]],
      [{ temperature: 1, topK: 3, topP: 1, seed: 5 }, [1, 2, 3]],
      [{ temperature: 1, topK: 0, topP: 0.5, seed: 5 }, [1, 2]], // e^3+e^3 > half of the mass
    ];
    for (const [params, kept] of cases) {
      const rs = Array.from({ length: steps }, (_, step) => ({ params, step }));
      const got = await sampleGpu(gpu, new Float32Array(Array.from({ length: steps }, () => row).flat()), 4, rs);
      expect(new Set(got)).toEqual(new Set(kept));
    }
    // two tokens, weights 1/3 and 1: token 0 iff u * 4/3 < 1/3
    const two = new Float32Array([0, Math.log(3)]);
    const w0 = sampleWeight(0, Math.fround(Math.log(3)), Math.fround(Math.LOG2E), -64);
    expect(Math.abs(w0 - 1 / 3)).toBeLessThan(1e-7);
    for (let step = 0; step < 8; step++) {
      const u = sampleRng(9, step);
      const want = u * (1 + w0) < w0 ? 0 : 1;
      expect(await sampleGpu(gpu, two, 2, [{ params: { temperature: 1, topK: 0, topP: 1, seed: 9 }, step }])).toEqual([want]);
    }
    expect([sampleRng(0, 0), sampleRng(1, 0), sampleRng(0, 1)]).toEqual([0.19039934873580933, 0.9108019471168518, 0.3686981797218323]);
  });

  it('draws follow softmax(l/T) restricted to the top-k/top-p set (chi-square, 2000 steps each)', async () => {
    const gpu = await testGpu();
    const logits = [1.0, 0.5, 2.0, -1, 0, 1.5, -0.5, 0.25, 1.2, -2];
    const vocab = logits.length;
    const steps = 2000;
    const cases: SamplingParams[] = [
      { temperature: 1, topK: 0, topP: 1, seed: 11 },
      { temperature: 0.7, topK: 4, topP: 1, seed: 12 },
      { temperature: 1.3, topK: 0, topP: 0.8, seed: 13 },
      { temperature: 1, topK: 6, topP: 0.9, seed: 14 },
    ];
    for (const params of cases) {
      const probs = expectedProbs(logits, params);
      const rs = Array.from({ length: steps }, (_, step) => ({ params, step }));
      const l = new Float32Array(Array.from({ length: steps }, () => logits).flat());
      const got = await sampleGpu(gpu, l, vocab, rs);
      expect(got).toEqual(refAll(l, vocab, rs));
      const counts = new Array<number>(vocab).fill(0);
      got.forEach((t) => counts[t]++);
      let chi2 = 0;
      let df = -1;
      for (let i = 0; i < vocab; i++) {
        if (probs[i] === 0) {
          expect(counts[i]).toBe(0); // outside the kept set: never drawn
          continue;
        }
        chi2 += (counts[i] - steps * probs[i]) ** 2 / (steps * probs[i]);
        df++;
      }
      // the 99.9% quantile of chi-square with df <= 9 is at most 27.9
      expect(chi2).toBeLessThan(CHI2_999[df]);
    }
  });

  it('a row gets the same token alone and in a batch of 7', async () => {
    const gpu = await testGpu();
    const vocab = 3001;
    const rows = 7;
    const l = logitsWithTies(rows, vocab, 77, 3);
    const rs: Row[] = Array.from({ length: rows }, (_, i) => ({
      params: { temperature: 0.4 + 0.3 * i, topK: [0, 50, 5, 0, 1000, 2, 0][i], topP: [1, 0.9, 1, 0.7, 0.95, 1, 0.3][i], seed: 1000 + i },
      step: 3 * i,
    }));
    const batch = await sampleGpu(gpu, l, vocab, rs);
    for (const i of [0, 3, 6]) {
      expect(await sampleGpu(gpu, l.slice(i * vocab, (i + 1) * vocab), vocab, [rs[i]])).toEqual([batch[i]]);
    }
    // the other rows' contents do not matter either
    const other = logitsWithTies(rows, vocab, 78, 3);
    other.set(l.subarray(3 * vocab, 4 * vocab), 3 * vocab);
    expect((await sampleGpu(gpu, other, vocab, rs))[3]).toBe(batch[3]);
  });

  it('rejects bad input with a RangeError', async () => {
    const gpu = await testGpu();
    const logits = storageBuffer(gpu, 'logits', 4 * 100);
    const params = uploadBuffer(gpu, 'params', new Uint8Array(packSamplingParams([{ params: greedy, step: 0 }])));
    const out = storageBuffer(gpu, 'out', 16);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeSample(rec, { logits, params, out, rows: 2, vocab: 50 })).toThrow(/params.*holds 32 bytes but the call needs 64/);
    expect(() => encodeSample(rec, { logits, params, out, rows: 0, vocab: 50 })).toThrow(/rows must be a positive integer/);
    expect(() => encodeSample(rec, { logits, params, out, rows: 1, vocab: 0 })).toThrow(RangeError);
    expect(() => encodeSample(rec, { logits, params, out, rows: 1, vocab: 101 })).toThrow(/logits/);
    expect(() => packSamplingParams([{ params: { ...greedy, topK: -1 }, step: 0 }])).toThrow(RangeError);
    expect(() => packSamplingParams([{ params: { ...greedy, topP: Number.NaN }, step: 0 }])).toThrow(/topP/);
    expect(() => packSamplingParams([{ params: greedy, step: -1 }])).toThrow(/step/);
    expect(() => sampleRef(new Float32Array(0), greedy, 0)).toThrow(RangeError);
    [logits, params, out].forEach((b) => gpu.destroyBuffer(b));
  });
});

/** The kernel's rule without top-k/top-p, but with f32 sums in plain index order. */
function naiveSample(row: Float32Array, p: SamplingParams, step: number): number {
  const rp = rowParams(p, step);
  const m = row[argmax(row)];
  const w = Array.from(row, (l) => sampleWeight(l, m, rp.scale, rp.cut));
  const z = w.reduce((s, x) => Math.fround(s + x), 0);
  const goal = Math.fround(sampleRng(rp.seed, rp.step) * z);
  let run = 0;
  for (let i = 0; i < row.length; i++) {
    run = Math.fround(run + w[i]);
    if (run > goal) return i;
  }
  return row.length - 1;
}

/** 99.9% quantiles of chi-square, df = 1..9. */
const CHI2_999 = [NaN, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88];

/** softmax(l/T) over the top-k tokens, then the smallest top-p prefix, renormalised (f64, sort-based). */
function expectedProbs(logits: number[], p: SamplingParams): number[] {
  const order = logits.map((_, i) => i).sort((a, b) => logits[b] - logits[a]);
  const max = logits[order[0]];
  const w = logits.map((l) => Math.exp((l - max) / p.temperature));
  const k = p.topK > 0 ? Math.min(p.topK, logits.length) : logits.length;
  const topk = order.slice(0, k);
  const zk = topk.reduce((s, i) => s + w[i], 0);
  const kept: number[] = [];
  let mass = 0;
  for (const i of topk) {
    if (mass >= p.topP * zk) break;
    if (p.topP < 1 && Math.abs(mass - p.topP * zk) < 1e-3 * zk) throw new Error('test case sits on a top-p boundary');
    kept.push(i);
    mass += w[i];
  }
  if (p.topP < 1 && Math.abs(mass - p.topP * zk) < 1e-3 * zk) throw new Error('test case sits on a top-p boundary');
  const probs = logits.map(() => 0);
  for (const i of kept) probs[i] = w[i] / mass;
  return probs;
}
