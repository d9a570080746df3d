/**
 * The rolling window (StreamingLLM's serving mode): each token attends to the
 * first `sinks` positions and the last `recent`; pages that leave every later
 * token's window go back to the pool. Checked token for token against the
 * TypeScript reference with the same mask over a full cache — across page
 * boundaries, with chunked prefill, and past the model's context — plus the
 * bound on the pages a windowed request holds, and bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inBrowser, rng, testGpu } from '../../test/gpu.ts';
import { loadCpuModel, modelRef } from '../../test/models.ts';
import { ReferenceModel } from '../model/reference.ts';
import { Engine } from './engine.ts';
import type { Gpu } from '../gpu/context.ts';
import type { CpuTensor } from '../model/weights-cpu.ts';

let gpu: Gpu;
let weights: Map<string, CpuTensor>;
beforeAll(async () => {
  gpu = await testGpu();
  weights = (await loadCpuModel('tiny-llama-gqa')).weights;
});

function promptOf(seed: number, n: number, vocab: number): number[] {
  const rand = rng(seed);
  return [1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(rand() * (vocab - 3)))];
}

describe('rolling window (tiny-llama-gqa, context 1024)', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 24, pageSize: 16, prefillChunk: 32, windowMaxPositions: 2048 });
  });
  afterAll(() => engine.destroy());

  it.each([
    { name: 'decode across page boundaries', prompt: 40, tokens: 100, window: { sinks: 2, recent: 20 } },
    { name: 'chunked prefill of a long prompt', prompt: 300, tokens: 30, window: { sinks: 4, recent: 48 } },
    { name: 'past the model’s context (1024)', prompt: 1100, tokens: 20, window: { sinks: 4, recent: 64 } },
    { name: 'no sinks', prompt: 120, tokens: 40, window: { sinks: 0, recent: 33 } },
  ])('$name: greedy tokens = the reference with the same mask; pages stay bounded', async ({ prompt, tokens, window }) => {
    const c = engine.config;
    const ids = promptOf(prompt, prompt, c.vocabSize);
    const want = new ReferenceModel(c, weights, { window, maxPositions: 2048 }).greedy(ids, tokens, []);
    engine.resetStats();
    const got = await engine.generate(ids, { maxTokens: tokens, ignoreEos: true, window });
    expect(got.tokens).toEqual(want);
    const P = 16;
    const bound = Math.ceil(window.sinks / P) + Math.ceil((window.recent + 32) / P) + 1; // sinks + window + one prefill chunk
    expect(engine.snapshot().pool.peakPagesInUse).toBeLessThanOrEqual(bound);
    engine.checkIdle();
  });

  it('a windowed request among plain ones: every request = its solo run', async () => {
    const c = engine.config;
    const a = promptOf(5, 200, c.vocabSize);
    const b = promptOf(6, 30, c.vocabSize);
    const window = { sinks: 4, recent: 40 };
    const soloA = await engine.generate(a, { maxTokens: 30, ignoreEos: true, window });
    const soloB = await engine.generate(b, { maxTokens: 30, ignoreEos: true });
    const [ga, gb] = await Promise.all([engine.generate(a, { maxTokens: 30, ignoreEos: true, window }), engine.generate(b, { maxTokens: 30, ignoreEos: true })]);
    expect(ga.tokens).toEqual(soloA.tokens);
    expect(gb.tokens).toEqual(soloB.tokens);
    engine.checkIdle();
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['sinks > recent', { window: { sinks: 10, recent: 5 } }, /window.sinks \(10\) must not exceed window.recent \(5\)/],
    ['a window larger than the context', { window: { sinks: 100, recent: 1000 } }, /larger than the model's context \(1024\)/],
    ['a negative sink count', { window: { sinks: -1, recent: 5 } }, /window.sinks must be a non-negative integer/],
    ['a non-numeric recent', { window: { sinks: 0, recent: '8' } }, /window.recent must be a positive integer/],
    ['a window and a press', { window: { sinks: 4, recent: 32 }, compression: { press: 'knorm', ratio: 0.5 } }, /rolling window or a KV compression press, not both/],
  ])('refuses %s, naming the option', async (_, opts, message) => {
    await expect(engine.generate([1, 2, 3], { maxTokens: 2, ...opts })).rejects.toThrow(message);
    engine.checkIdle();
  });

  it('without a window a prompt past the context is refused as before; with one it runs', async () => {
    const ids = promptOf(9, 1030, engine.config.vocabSize);
    await expect(engine.generate(ids, { maxTokens: 2 })).rejects.toThrow(/context holds 1024; shorten the prompt \(or use a rolling window\)/);
    const r = await engine.generate(ids, { maxTokens: 2, ignoreEos: true, window: { sinks: 4, recent: 64 } });
    expect(r.tokens).toHaveLength(2);
  });
});

describe('a > 4k-token prompt in a 512-token window', () => {
  // ~40 s on SwiftShader: Node only (the browser project runs the equality tests above)
  it.skipIf(inBrowser)('runs past the context with the pages of its window only: peak ≤ (sinks + recent) / pageSize + 2', async () => {
    const engine = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 48, pageSize: 16, prefillChunk: 16, windowMaxPositions: 8192 });
    const ids = promptOf(11, 4500, engine.config.vocabSize);
    engine.resetStats();
    const r = await engine.generate(ids, { maxTokens: 8, ignoreEos: true, window: { sinks: 4, recent: 512 } });
    expect(r.tokens).toHaveLength(8);
    const peak = engine.snapshot().pool.peakPagesInUse;
    console.log(`4500-token prompt, window 4 + 512, pageSize 16, chunk 16: peak ${peak} pages (${Math.ceil(4500 / 16)} without the window)`);
    expect(peak).toBeLessThanOrEqual((4 + 512) / 16 + 2);
    engine.checkIdle();
    await engine.destroy();
  });
});
