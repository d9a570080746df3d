import { describe, expect, it } from 'vitest';
import { maxRelErr, rng, testGpu } from '../../../test/gpu.ts';
import { readF32, storageBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { buildScoreFixture } from '../../../test/kv-score-fixture.ts';
import { knormScoreRef, positionScoreRef } from './kv-score.ref.ts';
import { encodeKvScoreKnorm, encodeKvScorePosition } from './kv-score.ts';
import type { KvDtype, KvGeometry } from '../kv-layout.ts';

// Tolerance (knorm): f32 sum of squares and sqrt vs f64 over the same
// (f16-rounded, for f16 KV) values: |gpu - ref| <= 1e-6 + 1e-5·|ref|.
// Position scores are exact.
const ATOL = 1e-6;
const RTOL = 1e-5;
const KEEP = 1e30;

async function knorm(g: KvGeometry, numTokens: number, seed: number, kv?: { k: Float32Array; v: Float32Array }) {
  const gpu = await testGpu();
  const fx = buildScoreFixture(gpu, g, numTokens, rng(seed), kv);
  const out = storageBuffer(gpu, 'test:out', g.numKvHeads * numTokens * 4);
  const rec = new CommandRecorder(gpu);
  encodeKvScoreKnorm(rec, { ...g, pool: fx.pool, blockTable: fx.blockTable, numTokens, out });
  await rec.submit();
  const got = await readF32(gpu, out);
  gpu.destroyBuffer(out);
  fx.destroy();
  return { got, want: knormScoreRef(fx.seq) };
}

describe('kv_score_knorm', () => {
  const cases: [number, number, number, number, KvDtype][] = [
    // headDim, numKvHeads, pageSize, numTokens, dtype
    [8, 2, 4, 13, 'f32'],
    [8, 2, 4, 13, 'f16'],
    [64, 2, 16, 37, 'f32'],
    [64, 1, 16, 37, 'f16'],
  ];
  it.each(cases)('headDim %i, %i kv heads, page %i, %i tokens, %s KV matches the reference', async (headDim, numKvHeads, pageSize, numTokens, dtype) => {
    const { got, want } = await knorm({ headDim, numKvHeads, pageSize, dtype }, numTokens, headDim * 7 + numTokens);
    expect(maxRelErr(got, want, ATOL, RTOL)).toBeLessThanOrEqual(1);
  });

  it('fixed case: -‖k‖ per token', async () => {
    // 1 kv head, headDim 2, 3 tokens: k = (3,4), (0,0), (1,0) → -5, 0, -1.
    const k = Float32Array.from([3, 4, 0, 0, 1, 0]);
    const { got } = await knorm({ headDim: 2, numKvHeads: 1, pageSize: 2, dtype: 'f32' }, 3, 1, { k, v: new Float32Array(6) });
    expect(Array.from(got)).toEqual([-5, -0, -1]);
  });

  it('rejects an odd head dim', async () => {
    const gpu = await testGpu();
    const b = storageBuffer(gpu, 'test:b', 4096);
    expect(() => encodeKvScoreKnorm(new CommandRecorder(gpu), { headDim: 3, numKvHeads: 1, pageSize: 4, dtype: 'f32', pool: b, blockTable: b, numTokens: 4, out: b })).toThrow(/headDim/);
    gpu.destroyBuffer(b);
  });
});

describe('kv_score_position', () => {
  async function position(numKvHeads: number, numTokens: number, sinks: number) {
    const gpu = await testGpu();
    const out = storageBuffer(gpu, 'test:out', numKvHeads * numTokens * 4);
    const rec = new CommandRecorder(gpu);
    encodeKvScorePosition(rec, { out, numKvHeads, numTokens, sinks, keepScore: KEEP });
    await rec.submit();
    const got = await readF32(gpu, out);
    gpu.destroyBuffer(out);
    return got;
  }

  it.each([
    [2, 13, 4],
    [3, 37, 0],
    [1, 3, 5],
  ])('%i kv heads, %i tokens, %i sinks matches the reference', async (numKvHeads, numTokens, sinks) => {
    expect(await position(numKvHeads, numTokens, sinks)).toEqual(positionScoreRef(numKvHeads, numTokens, sinks, KEEP));
  });

  it('fixed case: sinks then positions', async () => {
    expect(Array.from(await position(1, 6, 2))).toEqual([Math.fround(KEEP), Math.fround(KEEP), 2, 3, 4, 5]);
  });
});
