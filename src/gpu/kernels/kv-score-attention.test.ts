import { describe, expect, it } from 'vitest';
import { maxRelErr, randomF32, rng, testGpu } from '../../../test/gpu.ts';
import { readF32, storageBuffer, uploadBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { buildScoreFixture } from '../../../test/kv-score-fixture.ts';
import { attentionScoreRef, expectedScoreRef, type AttentionScoreRefOptions, type ScoreRefWindow } from './kv-score.ref.ts';
import { encodeKvScoreAttention, encodeKvScoreExpected, kvScoreAttentionScratchBytes, kvScoreExpectedScratchBytes } from './kv-score.ts';
import type { KvDtype, KvGeometry } from '../kv-layout.ts';

// Tolerance: f32 dot products, exp and (online, for attention) softmax sums
// vs f64 two-pass references over the same (f16-rounded, for f16 KV) values:
// |gpu - ref| <= 1e-6 + 1e-4·|ref| (SwiftShader measures within 1e-6 + 1e-5·|ref|;
// the slack is for GPUs with coarser exp; scores are probabilities ~1/N, so the
// relative term dominates).
const ATOL = 1e-6;
const RTOL = 1e-4;
const KEEP = 1e30;

interface Shape extends KvGeometry {
  numHeads: number;
  numTokens: number;
  window: number;
}

type Run = { kind: 'attention'; o: AttentionScoreRefOptions } | { kind: 'expected'; sinks: number };

async function score(s: Shape, run: Run, seed: number, given?: { k: Float32Array; v: Float32Array; q: Float32Array; scale: number }) {
  const gpu = await testGpu();
  const rand = rng(seed);
  const fx = buildScoreFixture(gpu, s, s.numTokens, rand, given);
  // q rows padded inside a wider row (like a fused qkv buffer).
  const qOffset = given ? 0 : 3;
  const qRowStride = s.numHeads * s.headDim + (given ? 0 : 5);
  const w: ScoreRefWindow = { q: given?.q ?? randomF32(s.window * qRowStride, rand, 2), qRowStride, qOffset, window: s.window, numHeads: s.numHeads, ...(given ? { scale: given.scale } : {}) };
  const q = uploadBuffer(gpu, 'test:q', w.q);
  const out = storageBuffer(gpu, 'test:out', s.numKvHeads * s.numTokens * 4);
  const scratchBytes = run.kind === 'attention' ? kvScoreAttentionScratchBytes(s.window, s.numHeads, s.numKvHeads, s.numTokens) : kvScoreExpectedScratchBytes(s.numHeads, s.headDim, s.numTokens);
  const scratch = storageBuffer(gpu, 'test:scratch', scratchBytes);
  const args = { ...s, pool: fx.pool, blockTable: fx.blockTable, out, q, qRowStride, qOffset, scratch, ...(given ? { scale: given.scale } : {}) };
  const rec = new CommandRecorder(gpu);
  if (run.kind === 'attention') encodeKvScoreAttention(rec, { ...args, ...run.o });
  else encodeKvScoreExpected(rec, { ...args, sinks: run.sinks, keepScore: KEEP });
  await rec.submit();
  const got = await readF32(gpu, out);
  [q, out, scratch].forEach((b) => gpu.destroyBuffer(b));
  fx.destroy();
  const want = run.kind === 'attention' ? attentionScoreRef(fx.seq, w, run.o) : expectedScoreRef(fx.seq, w, run.sinks, KEEP);
  return { got, want };
}

// headDim, numKvHeads, numHeads (GQA 2), pageSize, numTokens, window, dtype
const shapes: [number, number, number, number, number, number, KvDtype][] = [
  [8, 2, 4, 4, 13, 5, 'f32'],
  [8, 2, 4, 4, 13, 5, 'f16'],
  [64, 1, 2, 16, 37, 8, 'f32'],
  [64, 1, 2, 16, 37, 8, 'f16'],
];
const shape = (c: (typeof shapes)[number]): Shape => ({ headDim: c[0], numKvHeads: c[1], numHeads: c[2], pageSize: c[3], numTokens: c[4], window: c[5], dtype: c[6] });

describe('kv_score_attention', () => {
  const modes: [string, (s: Shape) => AttentionScoreRefOptions][] = [
    ['snapkv (mean, pool 5, window kept)', (s) => ({ mode: 'mean', poolKernel: 5, keepFrom: s.numTokens - s.window, keepScore: KEEP })],
    ['tova (last query)', (s) => ({ mode: 'last', poolKernel: 1, keepFrom: s.numTokens, keepScore: KEEP })],
    ['observed (sum, pool 3)', (s) => ({ mode: 'sum', poolKernel: 3, keepFrom: s.numTokens, keepScore: KEEP })],
  ];
  for (const [name, opts] of modes) {
    it.each(shapes)(`${name}: headDim %i, %i kv heads, %i heads, page %i, %i tokens, window %i, %s KV`, async (...c) => {
      const s = shape(c);
      const { got, want } = await score(s, { kind: 'attention', o: opts(s) }, c[0] + c[4] * 3 + name.length);
      expect(maxRelErr(got, want, ATOL, RTOL)).toBeLessThanOrEqual(1);
    });
  }

  it('fixed case: causal softmax, sum over the window, max-pool 3', async () => {
    // 1 head, headDim 2, scale 1, keys (1,0), (0,0), (0,0); window 2:
    //   query 0 (pos 1) = (0,0) sees keys 0..1: (1/2, 1/2, 0)
    //   query 1 (pos 2) = (ln2,0): exp(ln2, 0, 0) / 4 = (1/2, 1/4, 1/4)
    //   sum = (1, 3/4, 1/4); max-pool 3 → (1, 1, 3/4).
    const s: Shape = { headDim: 2, numKvHeads: 1, numHeads: 1, pageSize: 2, numTokens: 3, window: 2, dtype: 'f32' };
    const given = { k: Float32Array.from([1, 0, 0, 0, 0, 0]), v: new Float32Array(6), q: Float32Array.from([0, 0, Math.LN2, 0]), scale: 1 };
    const { got } = await score(s, { kind: 'attention', o: { mode: 'sum', poolKernel: 3, keepFrom: 3, keepScore: KEEP } }, 1, given);
    expect(maxRelErr(got, [1, 1, 0.75], 1e-6, 1e-6)).toBeLessThanOrEqual(1);
    // The same with the mean over the window and the window's keys kept: (0.5 pooled over key 0 only, KEEP, KEEP).
    const mean = await score(s, { kind: 'attention', o: { mode: 'mean', poolKernel: 5, keepFrom: 1, keepScore: KEEP } }, 1, given);
    expect(maxRelErr(mean.got, [0.5, KEEP, KEEP], 1e-6, 1e-6)).toBeLessThanOrEqual(1);
  });
});

describe('kv_score_expected', () => {
  it.each(shapes)('headDim %i, %i kv heads, %i heads, page %i, %i tokens, window %i, %s KV matches the reference', async (...c) => {
    const s = shape(c);
    const { got, want } = await score(s, { kind: 'expected', sinks: 2 }, c[0] * 5 + c[4]);
    expect(maxRelErr(got, want, ATOL, RTOL)).toBeLessThanOrEqual(1);
  });

  it('fixed case: Gaussian expectation, softmax, ‖v‖, sinks', async () => {
    // 1 head, headDim 2, scale 1; queries (1,0), (3,0): mean (2,0), var (1,0).
    // keys (0,0), (1,0), (-1,0) → e = 0, 2 + 1/2, -2 + 1/2; ‖v‖ = 5, 1, 2; 1 sink.
    const s: Shape = { headDim: 2, numKvHeads: 1, numHeads: 1, pageSize: 2, numTokens: 3, window: 2, dtype: 'f32' };
    const given = { k: Float32Array.from([0, 0, 1, 0, -1, 0]), v: Float32Array.from([3, 4, 1, 0, 0, 2]), q: Float32Array.from([1, 0, 3, 0]), scale: 1 };
    const { got } = await score(s, { kind: 'expected', sinks: 1 }, 1, given);
    const z = Math.exp(0) + Math.exp(2.5) + Math.exp(-1.5);
    expect(maxRelErr(got, [KEEP, Math.exp(2.5) / z, (2 * Math.exp(-1.5)) / z], 1e-6, 1e-5)).toBeLessThanOrEqual(1);
  });
});

describe('kv_score guards', () => {
  it('rejects a window longer than the sequence', async () => {
    const gpu = await testGpu();
    const b = storageBuffer(gpu, 'test:b', 1 << 16);
    const c = storageBuffer(gpu, 'test:c', 1 << 16);
    const args = { headDim: 8, numKvHeads: 1, numHeads: 2, pageSize: 4, dtype: 'f32' as const, pool: b, blockTable: b, q: b, qRowStride: 16, qOffset: 0, out: c, scratch: b, numTokens: 3, window: 4 };
    expect(() => encodeKvScoreAttention(new CommandRecorder(gpu), { ...args, mode: 'mean', poolKernel: 5, keepFrom: 0, keepScore: KEEP })).toThrow(/window 4/);
    expect(() => encodeKvScoreExpected(new CommandRecorder(gpu), { ...args, window: 2, scratch: c, sinks: 0, keepScore: KEEP })).toThrow(/scratch and out/);
    [b, c].forEach((x) => gpu.destroyBuffer(x));
  });
});
