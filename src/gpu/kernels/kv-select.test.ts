import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readU32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import type { Gpu } from '../context.ts';
import { encodeKvSelect } from './kv-select.ts';
import { kvSelectRef } from './kv-select.ref.ts';

async function select(gpu: Gpu, scores: Float32Array, numKvHeads: number, numTokens: number, k: number): Promise<Uint32Array> {
  const gScores = uploadBuffer(gpu, 'scores', scores);
  const gIdx = storageBuffer(gpu, 'indices', numKvHeads * k * 4);
  const rec = new CommandRecorder(gpu);
  encodeKvSelect(rec, { scores: gScores, indices: gIdx, numKvHeads, numTokens, k });
  await rec.submit();
  const out = await readU32(gpu, gIdx);
  [gScores, gIdx].forEach((b) => gpu.destroyBuffer(b));
  return out;
}

/** Scores with many ties (few levels), or continuous, with signed zeros, infinities and NaN (ordered by bits) mixed in. */
function randomScores(n: number, rand: () => number, tieLevels: number): Float32Array {
  const s = tieLevels > 0 ? Float32Array.from({ length: n }, () => Math.floor(rand() * tieLevels) - tieLevels / 2) : randomF32(n, rand, 100);
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.03) s[i] = -0;
    else if (r < 0.06) s[i] = 0;
    else if (r < 0.07) s[i] = r < 0.065 ? Infinity : -Infinity;
    else if (r < 0.075) s[i] = NaN;
  }
  return s;
}

describe('kv_select kernel', () => {
  for (const n of [1, 7, 33, 1000]) {
    it(`matches a CPU sort: numTokens=${n}, k in {1, mid, n}, with and without ties`, async () => {
      const gpu = await testGpu();
      const r = rng(n * 7 + 1);
      const heads = 3;
      for (const k of [...new Set([1, Math.max(1, Math.floor(n / 3)), n - 1, n])].filter((x) => x >= 1)) {
        for (const levels of [0, 5]) {
          const scores = randomScores(heads * n, r, levels);
          const got = await select(gpu, scores, heads, n, k);
          expect(got, `k=${k} levels=${levels}`).toEqual(kvSelectRef(scores, heads, n, k));
        }
      }
    });
  }

  it('selects a hand-checked case: ties at the k-th score keep the lowest indices', async () => {
    const gpu = await testGpu();
    // head 0: 3 is the best, then three tokens tie at 2 (indices 1, 2, 4): k=3 keeps 5, 1, 2 → [1, 2, 5].
    // head 1: all equal → the first k tokens; -0 ranks below +0.
    const scores = new Float32Array([0.5, 2, 2, -1, 2, 3, 0, -0, 0, -0, 0, -0]);
    expect(Array.from(await select(gpu, scores, 2, 6, 3))).toEqual([1, 2, 5, 0, 2, 4]);
  });

  it('is batch invariant: a head selects the same tokens alone and among other heads', async () => {
    const gpu = await testGpu();
    const r = rng(5);
    const n = 77, k = 20, heads = 5;
    const scores = randomScores(heads * n, r, 9);
    const all = await select(gpu, scores, heads, n, k);
    const alone = await select(gpu, scores.slice(3 * n, 4 * n), 1, n, k);
    expect(alone).toEqual(all.slice(3 * k, 4 * k));
  });

  it('rejects bad shapes with a RangeError naming the problem', async () => {
    const gpu = await testGpu();
    const s = storageBuffer(gpu, 's', 64), i = storageBuffer(gpu, 'i', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeKvSelect(rec, { scores: s, indices: i, numKvHeads: 1, numTokens: 4, k: 5 })).toThrow(/k \(5\) must be at most numTokens \(4\)/);
    expect(() => encodeKvSelect(rec, { scores: s, indices: i, numKvHeads: 1, numTokens: 4, k: 0 })).toThrow(/k must be a positive integer/);
    expect(() => encodeKvSelect(rec, { scores: s, indices: i, numKvHeads: 2, numTokens: 9, k: 1 })).toThrow(/buffer 'scores' holds 64 bytes but the call needs 72/);
    await rec.submit();
    [s, i].forEach((b) => gpu.destroyBuffer(b));
  });
});
