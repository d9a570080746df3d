/**
 * The prefix cache is lossless: prompts that share a prefix (a system prompt,
 * a previous turn) give exactly the tokens an engine without the cache gives,
 * alone and served together, also when a small pool forces cached pages out
 * and preempts requests. Runs in Node (dawn) and in headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng, testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { Gpu } from '../gpu/context.ts';

let gpu: Gpu;
const OPTS: EngineOptions = { pageSize: 8, prefillChunk: 16, scheduler: { maxBatchTokens: 32 } };

/** A shared 40-token "system prompt" followed by a few different tails, and one unrelated prompt. */
function prompts(vocab: number): number[][] {
  const rand = rng(7);
  const ids = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(rand() * (vocab - 3)));
  const system = [1, ...ids(39)];
  return [[...system, ...ids(5)], [...system, ...ids(13)], [...system, ...ids(1)], [1, ...ids(30)], [...system.slice(0, 20), ...ids(9)]];
}

async function all(engine: Engine, ps: number[][], together: boolean): Promise<number[][]> {
  const one = (p: number[]) => engine.generate(p, { maxTokens: 12, ignoreEos: true }).then((r) => r.tokens);
  if (together) return Promise.all(ps.map(one));
  const out: number[][] = [];
  for (const p of ps) out.push(await one(p));
  return out;
}

beforeAll(async () => {
  gpu = await testGpu();
});

describe('prefix cache', () => {
  let plain: Engine;
  let cached: Engine;
  let want: number[][];
  beforeAll(async () => {
    plain = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { ...OPTS, kvPages: 64, prefixCache: false });
    cached = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { ...OPTS, kvPages: 64 });
    want = await all(plain, prompts(plain.config.vocabSize), false);
  });
  afterAll(async () => {
    await plain.destroy();
    await cached.destroy();
  });

  it('one at a time: same tokens, and the shared system prompt is reused', async () => {
    const got = await all(cached, prompts(cached.config.vocabSize), false);
    expect(got).toEqual(want);
    const s = cached.snapshot().prefixCache;
    expect(s.hitRequests).toBeGreaterThanOrEqual(3);
    expect(s.hitTokens).toBeGreaterThanOrEqual(3 * 40 - 3 * 8);
    expect(plain.snapshot().prefixCache.hitTokens).toBe(0);
    expect(cached.snapshot().pool.pagesInUse).toBe(0);
  });

  it('all at once, twice (the second round hits pages cached by the first): same tokens', async () => {
    expect(await all(cached, prompts(cached.config.vocabSize), true)).toEqual(want);
    expect(await all(cached, prompts(cached.config.vocabSize), true)).toEqual(want);
    cached.checkInvariants();
  });

  it('a pool too small to keep everything: cached pages are reused for others and outputs do not change', async () => {
    const small = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { ...OPTS, kvPages: 12 });
    try {
      for (let round = 0; round < 2; round++) expect(await all(small, prompts(small.config.vocabSize), true)).toEqual(want);
      expect(small.snapshot().pool.pagesInUse).toBe(0);
      small.checkInvariants();
    } finally {
      await small.destroy();
    }
  });
});
