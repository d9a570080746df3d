/**
 * Image prompts whose KV is cached skip the vision encoder: across sessions
 * (stored pages, the next engine on the same store) and within one (pages
 * in the GPU prefix cache after the features left the feature cache). If the
 * cached pages are gone by the time the request runs, the scheduler holds it
 * back until the encoder has run — the answer is the same either way.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { resolveSource } from '../model/source.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { ChatMessage } from './types.ts';
import type { Gpu } from '../gpu/context.ts';
import { memoryStore } from '../kv/tiers/store-backend.ts';

const MODEL = modelRef('tiny-vlm-shapes');
let gpu: Gpu;
let image: Blob;
beforeAll(async () => {
  gpu = await testGpu();
  const bytes = await resolveSource(MODEL).readFile('testset/test_0003.png');
  image = new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' });
});

const open: Engine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.destroy()));
});

async function load(opts: EngineOptions): Promise<Engine> {
  const e = await Engine.load(gpu, MODEL, { pageSize: 16, ...opts });
  open.push(e);
  return e;
}

const ask = (text: string): ChatMessage[] => [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text }] }];
const greedy = { maxTokens: 16 };

describe('cached image prefixes skip the vision encoder', () => {
  it('a new session on the same store: no encoder run, the prefix from the store, the same answer', async () => {
    const persist = { store: 'memory' as const, name: `persist-images-${Date.now()}` };
    const first = await load({ kvPages: 64, persist });
    const a = await first.generate(ask('What shape is the red object?'), greedy);
    await first.flush();
    expect(first.snapshot().vision.encoderCalls).toBe(1);
    await first.destroy();
    open.splice(0);

    const second = await load({ kvPages: 64, persist });
    const b = await second.generate(ask('What shape is the red object?'), greedy);
    const s = second.snapshot();
    expect(b.text).toBe(a.text);
    expect(b.tokens).toEqual(a.tokens);
    expect(s.vision.encoderCalls).toBe(0);
    expect(s.vision.imagesDecoded).toBe(0); // its expansion came from the store beside the pages: not even decoded
    expect(s.tiers!.stored!.restoredTokens).toBe(b.timing.prefixHitTokens);
    expect(b.timing.prefixFrom).toEqual({ gpu: 0, cpu: 0, stored: b.timing.prefixHitTokens });
    expect(b.timing.prefixHitTokens).toBeGreaterThan(b.promptTokens - 16);
    second.checkIdle();
  });

  it('another question about the same picture in a new session: its tail page comes from the store too — no encoder run, the picture\'s KV whole, = no cache', async () => {
    const persist = { store: 'memory' as const, name: `persist-images-tail-${Date.now()}` };
    const first = await load({ kvPages: 64, persist });
    await first.generate(ask('What shape is the red object?'), greedy);
    await first.flush();
    await first.destroy();
    open.splice(0);

    const second = await load({ kvPages: 64, persist });
    const prompt = await second.prepare(ask('How many shapes are there?'));
    const end = Math.max(...prompt.images.flatMap((i) => i.runs.map((r) => r.start + r.count)));
    expect(end % 16).not.toBe(0); // the picture ends inside a page: without its tail, that page is recomputed and the encoder runs
    const b = await second.generate(prompt, greedy);
    const s = second.snapshot();
    expect(s.vision.encoderCalls).toBe(0);
    expect(b.timing.prefixHitTokens).toBe(end); // the full pages and the tail; only the question is prefilled
    expect(b.timing.prefixFrom).toEqual({ gpu: 0, cpu: 0, stored: end });
    const plain = await (await load({ kvPages: 64, prefixCache: false })).generate(ask('How many shapes are there?'), greedy);
    expect(b.tokens).toEqual(plain.tokens);
    second.checkIdle();
  });

  it('a stored expansion that fails verification is deleted and the picture decoded instead: the same answer', async () => {
    const name = `persist-images-exp-${Date.now()}`;
    const persist = { store: 'memory' as const, name };
    const first = await load({ kvPages: 64, persist });
    const a = await first.generate(ask('What shape is the red object?'), greedy);
    await first.flush();
    await first.destroy();
    open.splice(0);
    const records = memoryStore(`${name}-images`).manifests;
    expect(records.size).toBe(1);
    const record = () => [...records.values()][0] as { ids: number[] };
    const original = [...record().ids];
    record().ids[1] += 1; // one id changed: a prompt that would not match the picture

    const second = await load({ kvPages: 64, persist });
    const b = await second.generate(ask('What shape is the red object?'), greedy);
    expect(b.tokens).toEqual(a.tokens);
    expect(second.snapshot().vision.imagesDecoded).toBe(1);
    await second.flush();
    expect(records.size).toBe(1); // deleted, then written again from the decode
    expect(record().ids).toEqual(original);
  });

  it('the same session, another question: the tail comes up from the CPU tier into a private page, = no cache', async () => {
    const engine = await load({ kvPages: 64 });
    await engine.generate(ask('What shape is the red object?'), greedy);
    const b = await engine.generate(ask('How many shapes are there?'), greedy);
    const c = await engine.generate(ask('Is there a blue object?'), greedy);
    const plain = await load({ kvPages: 64, prefixCache: false });
    for (const [r, q] of [[b, 'How many shapes are there?'], [c, 'Is there a blue object?']] as const) {
      expect(r.timing.prefixHitTokens % 16).not.toBe(0); // the tail's tokens
      expect(r.timing.prefixFrom!.cpu).toBe(r.timing.prefixHitTokens % 16);
      expect(r.tokens).toEqual((await plain.generate(ask(q), greedy)).tokens);
    }
    engine.checkIdle();
  });

  it('a compressed image prefix (SnapKV 0.5) stored in one session answers a new question in the next: no encoder run, = fresh compression', async () => {
    const persist = { store: 'memory' as const, name: `persist-images-cp-${Date.now()}` };
    const cachePrefix = { until: 'image' as const, press: 'snapkv', ratio: 0.5 };
    const first = await load({ kvPages: 64, persist });
    await first.generate(ask('What shape is the red object?'), { ...greedy, cachePrefix });
    await first.flush();
    await first.destroy();
    open.splice(0);
    const second = await load({ kvPages: 64, persist });
    const b = await second.generate(ask('How many shapes are there?'), { ...greedy, cachePrefix });
    const s = second.snapshot();
    expect(s.vision.encoderCalls).toBe(0);
    expect(s.compression.requests).toBe(0); // adopted from the store, not compressed again
    expect(b.timing.evictedTokens).toBeGreaterThan(0);
    const fresh = await (await load({ kvPages: 64 })).generate(ask('How many shapes are there?'), { ...greedy, cachePrefix });
    expect(b.tokens).toEqual(fresh.tokens);
    second.checkIdle();
  });

  it('pages lost before the request runs: it waits for the encoder instead, and answers the same', async () => {
    // no feature cache to speak of, no CPU tier: only the GPU prefix cache remembers the image
    const engine = await load({ kvPages: 16, imageCacheBytes: 1, cpuCacheBytes: 0, prefillChunk: 32 });
    const a = await engine.generate(ask('What colour is the square?'), greedy);
    expect(engine.snapshot().vision.encoderCalls).toBe(1);
    const prepared = await engine.prepare(ask('What colour is the square?'));
    expect(prepared.images[0].features).toBeNull(); // its KV is in the prefix cache: not encoded
    expect(engine.snapshot().vision.encoderCalls).toBe(1);
    const flood = [1, ...Array.from({ length: 16 * 16 - 40 }, (_, i) => 3 + ((i * 7) % 200))];
    await engine.generate(flood, { maxTokens: 4, ignoreEos: true }); // takes every page: the image's cached pages go
    const b = await engine.generate(prepared, greedy);
    expect(b.tokens).toEqual(a.tokens);
    expect(engine.snapshot().vision.encoderCalls).toBe(2);
    engine.checkIdle();
  });

  it('an aborted request waiting for its image releases everything', async () => {
    const engine = await load({ kvPages: 16, imageCacheBytes: 1, cpuCacheBytes: 0 });
    await engine.generate(ask('How many shapes are there?'), greedy);
    const prepared = await engine.prepare(ask('How many shapes are there?'));
    await engine.generate([1, ...Array.from({ length: 200 }, (_, i) => 3 + (i % 100))], { maxTokens: 4, ignoreEos: true });
    const ac = new AbortController();
    const pending = engine.generate(prepared, { ...greedy, signal: ac.signal });
    setTimeout(() => ac.abort(), 20); // while the scheduler holds it back for the encoder
    expect((await pending).finishReason).toBe('abort');
    await engine.flush();
    engine.checkIdle();
    const again = await engine.generate(ask('How many shapes are there?'), greedy); // the features the aborted request got are not leaked pinned
    expect(again.finishReason).not.toBe('abort');
  });
});
