import { afterAll, describe, expect, it } from 'vitest';
import { maxRelErr, randomF32, rng, testGpu } from '../../../test/gpu.ts';
import type { Gpu } from '../../gpu/context.ts';
import { readF32, uploadBuffer } from '../../gpu/buffers.ts';
import { CommandRecorder } from '../../gpu/recorder.ts';
import { buildScoreFixture, type ScoreFixture } from '../../../test/kv-score-fixture.ts';
import type { KvDtype } from '../../gpu/kv-layout.ts';
import { attentionScoreRef, expectedScoreRef, knormScoreRef, positionScoreRef, type ScoreRefSeq, type ScoreRefWindow } from '../../gpu/kernels/kv-score.ref.ts';
import { KEEP_SCORE, NO_PRESS, PRESSES, createPress, type Press, type ScoreContext } from './index.ts';

const geometry = { numKvHeads: 2, numHeads: 4, headDim: 8, pageSize: 4 };
const WINDOW = 6;

interface Seq {
  fx: ScoreFixture;
  q: GPUBuffer;
  qHost: Float32Array;
  numTokens: number;
}

const live: GPUBuffer[] = [];
const presses: Press[] = [];
afterAll(async () => {
  const gpu = await testGpu();
  live.forEach((b) => gpu.destroyBuffer(b));
  presses.forEach((p) => p.destroy?.());
});

function makeSeq(gpu: Gpu, dtype: KvDtype, numTokens: number, seed: number): Seq {
  const rand = rng(seed);
  const fx = buildScoreFixture(gpu, { ...geometry, dtype }, numTokens, rand);
  const qHost = randomF32(WINDOW * geometry.numHeads * geometry.headDim, rand, 2);
  const q = uploadBuffer(gpu, 'test:q', qHost);
  live.push(fx.pool, fx.blockTable, q);
  return { fx, q, qHost, numTokens };
}

function context(rec: CommandRecorder, s: Seq, dtype: KvDtype, out: GPUBuffer): ScoreContext {
  return {
    rec, layer: 0, pool: s.fx.pool, blockTable: s.fx.blockTable, numTokens: s.numTokens, ...geometry, dtype, out,
    queries: { buffer: s.q, window: WINDOW, rowStride: geometry.numHeads * geometry.headDim, offset: 0 },
  };
}

/** Scores `seqs` one after another in one recorder (like layers of one compress step); out starts as NaN. */
async function score(gpu: Gpu, press: Press, dtype: KvDtype, seqs: Seq[]): Promise<{ scores: Float32Array[]; dispatches: number }> {
  const outs = seqs.map((s) => uploadBuffer(gpu, 'test:out', new Float32Array(geometry.numKvHeads * s.numTokens).fill(NaN)));
  const rec = new CommandRecorder(gpu);
  seqs.forEach((s, i) => press.encodeScores(context(rec, s, dtype, outs[i])));
  const dispatches = rec.dispatches;
  await rec.submit();
  const scores = await Promise.all(outs.map((o) => readF32(gpu, o)));
  outs.forEach((o) => gpu.destroyBuffer(o));
  return { scores, dispatches };
}

// Each press's rule, written with the kernels' references and the press's defaults (sinks 4, SnapKV kernel 5).
const KEEP = Math.fround(KEEP_SCORE);
const RULES: Record<string, (s: ScoreRefSeq, w: ScoreRefWindow) => Float32Array> = {
  knorm: (s) => knormScoreRef(s),
  'streaming-llm': (s) => positionScoreRef(s.numKvHeads, s.numTokens, 4, KEEP),
  'sliding-window': (s) => positionScoreRef(s.numKvHeads, s.numTokens, 0, KEEP),
  snapkv: (s, w) => attentionScoreRef(s, w, { mode: 'mean', poolKernel: 5, keepFrom: s.numTokens - w.window, keepScore: KEEP }),
  tova: (s, w) => attentionScoreRef(s, w, { mode: 'last', poolKernel: 1, keepFrom: s.numTokens, keepScore: KEEP }),
  'observed-attention': (s, w) => attentionScoreRef(s, w, { mode: 'sum', poolKernel: 1, keepFrom: s.numTokens, keepScore: KEEP }),
  'expected-attention': (s, w) => expectedScoreRef(s, w, 4, KEEP),
};

describe('PRESSES registry', () => {
  const cases = Object.keys(PRESSES).flatMap((name) => (['f32', 'f16'] as const).map((dtype) => [name, dtype] as const));

  it.each(cases)('%s (%s KV) gives finite scores of shape [numKvHeads, numTokens]', async (name, dtype) => {
    const gpu = await testGpu();
    const press = createPress(name);
    presses.push(press);
    expect(press.name).toBe(name);
    const seq = makeSeq(gpu, dtype, 21, name.length * 31 + (dtype === 'f16' ? 1 : 0));
    const { scores: [s], dispatches } = await score(gpu, press, dtype, [seq]);
    if (name === NO_PRESS) {
      expect(dispatches).toBe(0);
      return;
    }
    expect(s.length).toBe(geometry.numKvHeads * 21);
    expect(s.every(Number.isFinite)).toBe(true);
    // The press applies its documented rule (tolerance as the kernel tests: 1e-6 + 1e-4·|ref|).
    const w: ScoreRefWindow = { q: seq.qHost, qRowStride: geometry.numHeads * geometry.headDim, qOffset: 0, window: WINDOW, numHeads: geometry.numHeads };
    expect(maxRelErr(s, RULES[name](seq.fx.seq, w), 1e-6, 1e-4)).toBeLessThanOrEqual(1);
  });

  it('every press but none has a rule in this test', () => {
    expect(Object.keys(PRESSES).filter((n) => n !== NO_PRESS).sort()).toEqual(Object.keys(RULES).sort());
  });

  it('sinks and the observation window get KEEP_SCORE where the rule keeps them', async () => {
    const gpu = await testGpu();
    const seq = makeSeq(gpu, 'f32', 21, 5);
    const keep = KEEP;
    for (const [name, kept] of [['streaming-llm', [0, 1, 2, 3]], ['expected-attention', [0, 1, 2, 3]], ['snapkv', [15, 16, 17, 18, 19, 20]]] as const) {
      const press = createPress(name);
      presses.push(press);
      const [s] = (await score(gpu, press, 'f32', [seq])).scores;
      for (let g = 0; g < geometry.numKvHeads; g++) {
        const row = s.subarray(g * 21, (g + 1) * 21);
        row.forEach((x, j) => expect(x === keep, `${name} head ${g} token ${j}`).toBe((kept as readonly number[]).includes(j)));
      }
    }
  });

  it('a press reused for a longer sequence in the same recorder (growing scratch) scores it as when alone', async () => {
    const gpu = await testGpu();
    const short = makeSeq(gpu, 'f16', 9, 7);
    const long = makeSeq(gpu, 'f16', 37, 8);
    for (const name of ['snapkv', 'expected-attention']) {
      const press = createPress(name);
      presses.push(press);
      const both = await score(gpu, press, 'f16', [short, long]);
      const fresh = createPress(name);
      presses.push(fresh);
      const alone = await score(gpu, fresh, 'f16', [long]);
      expect(both.scores[1]).toEqual(alone.scores[0]);
    }
  });

  it('an attention press without queries throws a RangeError naming it', async () => {
    const gpu = await testGpu();
    const seq = makeSeq(gpu, 'f32', 9, 9);
    const { queries: _, ...ctx } = context(new CommandRecorder(gpu), seq, 'f32', seq.q);
    for (const name of Object.keys(PRESSES)) {
      const press = createPress(name);
      if (press.needsQueries) expect(() => press.encodeScores(ctx)).toThrow(new RegExp(`'${name}'.*queries`));
    }
  });

  it('an unknown press name lists the known ones', () => {
    expect(() => createPress('h3o')).toThrow(/knorm/);
  });
});
