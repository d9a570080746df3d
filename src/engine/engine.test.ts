/**
 * The engine against independent implementations: llama2.c's greedy
 * continuation of stories260K, and the TypeScript reference forward pass
 * on the generated tiny models (token for token, and last-step logits).
 * Runs in Node (dawn) and in headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu, maxRelErr } from '../../test/gpu.ts';
import { loadCpuModel, modelRef, TINY_MODELS } from '../../test/models.ts';
import { Engine } from './engine.ts';
import { ReferenceModel } from '../model/reference.ts';
import type { Gpu } from '../gpu/context.ts';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

async function referenceGreedy(): Promise<{ prompt_ids: number[]; ids: number[]; text: string }> {
  const { resolveSource } = await import('../model/source.ts');
  const bytes = await resolveSource(modelRef('stories260K')).readFile('reference_greedy.json');
  return JSON.parse(new TextDecoder().decode(bytes));
}

describe('stories260K against llama2.c', () => {
  let engine: Engine;
  let ref: Awaited<ReturnType<typeof referenceGreedy>>;
  beforeAll(async () => {
    engine = await Engine.load(gpu, modelRef('stories260K'), { kvPages: 64 });
    ref = await referenceGreedy();
  });
  afterAll(() => engine.destroy());

  it('greedy continuation from BOS equals the 120 reference ids (f32 weights and KV)', async () => {
    const r = await engine.generate(ref.prompt_ids, { maxTokens: 120, ignoreEos: true });
    expect(r.tokens).toEqual(ref.ids.slice(ref.prompt_ids.length));
    expect(r.text).toBe(engine.tokenizer.decode(ref.ids.slice(ref.prompt_ids.length)));
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('reports agreement with f16 KV', async () => {
    const e16 = await Engine.load(gpu, modelRef('stories260K'), { kvPages: 64, kvDtype: 'f16' });
    const r = await e16.generate(ref.prompt_ids, { maxTokens: 120, ignoreEos: true });
    const want = ref.ids.slice(ref.prompt_ids.length);
    let agree = 0;
    while (agree < want.length && r.tokens[agree] === want[agree]) agree++;
    console.log(`stories260K with f16 KV: first ${agree} of ${want.length} greedy tokens agree with llama2.c`);
    expect(agree).toBeGreaterThan(0);
    await e16.destroy();
  });
});

describe.each(TINY_MODELS)('%s against the reference forward pass', (name) => {
  let engine: Engine;
  let reference: ReferenceModel;
  beforeAll(async () => {
    engine = await Engine.load(gpu, modelRef(name), { kvPages: 48, pageSize: 16, prefillChunk: 32 });
    reference = new ReferenceModel(engine.config, (await loadCpuModel(name)).weights);
  });
  afterAll(() => engine.destroy());

  const prompts = ['Once upon a time', 'The cat sat on the mat and looked at the little dog.', 'Hi'];
  it.each(prompts)('64 greedy tokens equal the reference for %j', async (prompt) => {
    const ids = engine.encode(prompt);
    reference.reset();
    const want = reference.greedy(ids, 64, []);
    const got = await engine.generate(ids, { maxTokens: 64, ignoreEos: true });
    expect(got.tokens).toEqual(want);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('a prompt across many pages, in one chunk and in several, gives the same tokens', async () => {
    const ids = engine.encode('Once upon a time there was a little girl who loved to play in the park with her big red ball every day.');
    const long = [...ids, ...ids.slice(1), ...ids.slice(1)].slice(0, 100); // > 6 pages of 16
    reference.reset();
    const want = reference.greedy(long, 16, []);
    const chunked = await engine.generate(long, { maxTokens: 16, ignoreEos: true });
    const one = await Engine.load(gpu, modelRef(name), { kvPages: 48, pageSize: 16, prefillChunk: 128 });
    const whole = await one.generate(long, { maxTokens: 16, ignoreEos: true });
    await one.destroy();
    expect(chunked.tokens).toEqual(want);
    expect(whole.tokens).toEqual(want);
  });

  it('teacher forcing emits the forced ids and returns the logits each came from', async () => {
    const ids = engine.encode('Once upon a time');
    const forced = [5, 17, 300, 42, 9];
    const r = await engine.generate(ids, { maxTokens: 5, forceTokens: forced, returnLogits: true, ignoreEos: true });
    expect(r.tokens).toEqual(forced);
    reference.reset();
    const want = reference.forwardAll([...ids, ...forced.slice(0, -1)]).slice(ids.length - 1);
    expect(r.logits!.length).toBe(5);
    r.logits!.forEach((l, i) => expect(maxRelErr(l, want[i], 1e-3, 1e-3)).toBeLessThanOrEqual(1));
  });

  it('last-step logits agree with the reference', async () => {
    const ids = engine.encode('The dog ran to the park');
    reference.reset();
    const want = reference.forwardAll(ids).at(-1)!;
    const got = await lastLogits(engine, ids);
    expect(maxRelErr(got, want, 1e-3, 1e-3)).toBeLessThanOrEqual(1);
  });
});

describe('f16 weights and f16 KV (tiny-llama-hd32) against the reference with f16 KV', () => {
  it('64 greedy tokens agree token for token', async () => {
    const engine = await Engine.load(gpu, modelRef('tiny-llama-hd32'), { kvPages: 16, weightDtype: 'f16', kvDtype: 'f16' });
    expect((await engine.info()).weightDtype).toBe('f16');
    const reference = new ReferenceModel(engine.config, (await loadCpuModel('tiny-llama-hd32', 'f16')).weights, { kvDtype: 'f16' });
    for (const prompt of ['Once upon a time', 'The little bird sang']) {
      const ids = engine.encode(prompt);
      const want = reference.greedy(ids, 64, []);
      const got = await engine.generate(ids, { maxTokens: 64, ignoreEos: true });
      expect(got.tokens).toEqual(want);
    }
    await engine.destroy();
  });
});

describe('info()', () => {
  it('counts parameters as elements, the same for f32 and f16 weights (norms stay f32 on the GPU)', async () => {
    const cpu = await loadCpuModel('tiny-llama-hd32', 'f32');
    const want = [...cpu.weights.values()].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    for (const weightDtype of ['f32', 'f16'] as const) {
      const engine = await Engine.load(gpu, modelRef('tiny-llama-hd32'), { kvPages: 4, weightDtype });
      const info = await engine.info();
      expect(info).toMatchObject({ parameters: want, weightDtype, kvDtype: 'f32', kvPages: 4, pageSize: 16, vision: false, visionBackend: null });
      const c = cpu.config; // a page: K and V of every layer and KV head, 16 tokens, f32
      expect(info.kvPageBytes).toBe(2 * c.numLayers * c.numKvHeads * c.headDim * 16 * 4);
      await engine.destroy();
    }
  });
});

describe('bad input', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 4, pageSize: 16 });
  });
  afterAll(() => engine.destroy());

  it('a prompt longer than the context names both lengths', async () => {
    const n = engine.config.maxPositions + 5;
    await expect(engine.generate(Array(n).fill(1), { maxTokens: 1 })).rejects.toThrow(new RegExp(`${n} tokens.*context holds ${engine.config.maxPositions}`));
  });

  it('a pool too small for the request says what to change, and keeps every page', async () => {
    await expect(engine.generate(Array(70).fill(5), { maxTokens: 10 })).rejects.toThrow(/KV pool holds 4 pages.*needs 5 pages/);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('a load that fails after allocating (a bad scheduler setting) frees what it allocated', async () => {
    const before = gpu.memory.snapshot().bytes;
    await expect(Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 4, scheduler: { maxRunning: 0 } })).rejects.toThrow(/maxRunning must be a positive integer/);
    expect(gpu.memory.snapshot().bytes).toBe(before);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a negative CPU tier budget', { cpuCacheBytes: -1 }, /cpuCacheBytes must be a non-negative integer/],
    ['a non-numeric CPU tier budget', { cpuCacheBytes: '64MB' }, /cpuCacheBytes must be a non-negative integer/],
    ['an unknown preemption mode', { preemption: 'swap' }, /preemption must be one of 'recompute', 'offload', 'auto', got "swap"/],
  ])('%s is refused at load, naming the option, and frees what was allocated', async (_, opts, message) => {
    const before = gpu.memory.snapshot().bytes;
    await expect(Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 4, ...opts })).rejects.toThrow(message);
    expect(gpu.memory.snapshot().bytes).toBe(before);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['stop holding a number', { stop: ['a', 5] }, /'stop' must be an array of strings/],
    ['a string maxTokens', { maxTokens: '4' }, /'maxTokens' must be a positive integer, got "4"/],
    ['a string temperature', { sampling: { temperature: '0.7' } }, /'sampling.temperature' must be a number/],
    ['a numeric request id', { requestId: 7 }, /'requestId' must be a string of 1 to 256 characters, got 7/],
    ['a press named by a number', { compression: { press: 3, ratio: 0.5 } }, /'compression.press' must be the name of a press/],
  ])('options of the wrong type (%s) are refused before anything is queued, naming the option', async (_, opts, message) => {
    await expect(engine.generate([1, 2, 3], opts)).rejects.toThrow(message);
    engine.checkIdle();
  });

  it('token ids outside the vocabulary are rejected', async () => {
    await expect(engine.generate([1, engine.config.vocabSize + 3], { maxTokens: 1 })).rejects.toThrow(/outside the vocabulary/);
  });

  it('an aborted request frees its pages', async () => {
    const ac = new AbortController();
    let n = 0;
    const r = await engine.generate([1, 2, 3], { maxTokens: 40, ignoreEos: true, signal: ac.signal, onToken: () => ++n === 3 && ac.abort() });
    expect(r.finishReason).toBe('abort');
    expect(r.tokens.length).toBe(3);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });
});

/** The logits the engine samples its first token from: those of the prompt's last position. */
async function lastLogits(engine: Engine, ids: number[]): Promise<Float32Array> {
  const r = await engine.generate(ids, { maxTokens: 1, ignoreEos: true, returnLogits: true });
  return r.logits![0];
}
