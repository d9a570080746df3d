/**
 * KV compression as a stage of the engine: presses score on the GPU, the
 * kept tokens are compacted into the front pages, freed pages go back to
 * the pool, and generation continues with correct positions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { loadCpuModel, modelRef } from '../../test/models.ts';
import { Engine } from './engine.ts';
import { ReferenceModel } from '../model/reference.ts';
import { PRESSES } from '../kv/presses/index.ts';
import type { Gpu } from '../gpu/context.ts';

let gpu: Gpu;
let engine: Engine;
let reference: ReferenceModel;
beforeAll(async () => {
  gpu = await testGpu();
  engine = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 32, pageSize: 16, prefillChunk: 32 });
  reference = new ReferenceModel(engine.config, (await loadCpuModel('tiny-llama-gqa')).weights);
});
afterAll(() => engine.destroy());

// ~36 tokens: more than two pages, and longer than one prefill chunk
const text = 'Once upon a time there was a little girl named Lily. She loved to play in the park with her red ball and her dog.';
const prompt = () => engine.encode(text);

describe('KV compression in the engine', () => {
  it('at ratio 0 every press reproduces the uncompressed output token for token', async () => {
    const want = (await engine.generate(prompt(), { maxTokens: 24, ignoreEos: true })).tokens;
    for (const press of Object.keys(PRESSES)) {
      const got = await engine.generate(prompt(), { maxTokens: 24, ignoreEos: true, compression: { press, ratio: 0 } });
      expect(got.tokens, press).toEqual(want);
    }
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('StreamingLLM equals the reference with the same sinks + recent window kept', async () => {
    const ids = prompt();
    const n = ids.length;
    const ratio = 0.5;
    const keep = n - Math.floor(n * ratio);
    const got = await engine.generate(ids, { maxTokens: 24, ignoreEos: true, compression: { press: 'streaming-llm', ratio } });
    // reference: full prefill, first token from full logits, then keep 4 sinks + the most recent tokens
    reference.reset();
    let logits = reference.forward(ids);
    const want: number[] = [];
    const argmax = (l: Float32Array) => l.reduce((b, v, i) => (v > l[b] ? i : b), 0);
    want.push(argmax(logits));
    reference.evict([...Array(4).keys(), ...Array.from({ length: keep - 4 }, (_, i) => n - (keep - 4) + i)]);
    while (want.length < 24) {
      logits = reference.forward([want.at(-1)!]);
      want.push(argmax(logits));
    }
    expect(got.tokens).toEqual(want);
  });

  it('frees the evicted pages for other requests: fewer pages in use during decode', async () => {
    const peak = async (compression?: { press: string; ratio: number }) => {
      let max = 0;
      const off = engine.on((e) => {
        if (e.kind === 'step' && e.decode > 0) max = Math.max(max, e.pagesInUse);
      });
      await engine.generate(prompt(), { maxTokens: 8, ignoreEos: true, ...(compression ? { compression } : {}) });
      off();
      return max;
    };
    const before = engine.snapshot().compression;
    const full = await peak();
    const compressed = await peak({ press: 'knorm', ratio: 0.75 });
    const after = engine.snapshot().compression;
    expect(compressed).toBeLessThan(full);
    expect(after.freedPages - before.freedPages).toBeGreaterThanOrEqual(full - compressed);
    expect(after.evictedTokens - before.evictedTokens).toBe(Math.floor(prompt().length * 0.75));
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it.each(Object.keys(PRESSES).filter((p) => p !== 'none'))('%s at ratio 0.5 evicts half the prompt and keeps generating', async (press) => {
    const before = engine.snapshot().compression.evictedTokens;
    const r = await engine.generate(prompt(), { maxTokens: 16, ignoreEos: true, compression: { press, ratio: 0.5 } });
    expect(r.tokens.length).toBe(16);
    expect(r.tokens.every((t) => t >= 0 && t < engine.config.vocabSize)).toBe(true);
    expect(engine.snapshot().compression.evictedTokens - before).toBe(Math.floor(prompt().length * 0.5));
  });

  it('compresses only the given region', async () => {
    const before = engine.snapshot().compression.evictedTokens;
    await engine.generate(prompt(), { maxTokens: 4, ignoreEos: true, compression: { press: 'knorm', ratio: 0.5, region: { start: 5, end: 25 } } });
    expect(prompt().length).toBeGreaterThan(25);
    expect(engine.snapshot().compression.evictedTokens - before).toBe(10);
  });

  it('rejects an unknown press or a bad ratio before queueing anything', () => {
    expect(() => engine.submit(prompt(), { compression: { press: 'magic', ratio: 0.5 } })).toThrow(/unknown press 'magic'.*known: none, knorm/);
    expect(() => engine.submit(prompt(), { compression: { press: 'knorm', ratio: 1 } })).toThrow(/ratio must be in \[0, 1\)/);
    expect(engine.snapshot().requestsWaiting).toBe(0);
  });
});
