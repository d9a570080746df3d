/**
 * Compressed prefixes compressed once and reused: the first request with a
 * cache prefix prefills the prefix alone, compresses it and shares the kept
 * pages; later requests whose prompts start the same adopt them and prefill
 * only the rest — their outputs equal the same press computed fresh. Stored
 * with `persist`, a new session adopts them from the store.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rng, testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { Gpu } from '../gpu/context.ts';
import type { CachePrefixOptions } from '../api/chat-types.ts';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});
const open: Engine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.destroy()));
});
async function load(extra: EngineOptions = {}): Promise<Engine> {
  const e = await Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 48, pageSize: 16, prefillChunk: 32, ...extra });
  open.push(e);
  return e;
}

function ids(seed: number, n: number, first = 1): number[] {
  const r = rng(seed);
  return [...(first ? [1] : []), ...Array.from({ length: n - first }, () => 3 + Math.floor(r() * 500))];
}

const prefix = ids(1, 100);
const question = (seed: number) => [...prefix, ...ids(seed, 23, 0)];
const greedy = { maxTokens: 10, ignoreEos: true };

describe.each<CachePrefixOptions>([
  { until: 100, press: 'knorm', ratio: 0.5 },
  { until: 100, press: 'snapkv', ratio: 0.6, window: 8 },
])('cache prefix $press at $ratio', (cachePrefix) => {
  it('compressed once; later questions adopt it and prefill only the rest; each equals the press computed fresh', async () => {
    const engine = await load();
    const a = await engine.generate(question(2), { ...greedy, cachePrefix });
    const s1 = engine.snapshot();
    expect(s1.compression.requests).toBe(1);
    const b = await engine.generate(question(3), { ...greedy, cachePrefix });
    const s2 = engine.snapshot();
    expect(s2.compression.requests).toBe(1); // not compressed again
    expect(s2.promptTokens - s1.promptTokens).toBe(23); // the question only
    expect(b.timing.prefixHitTokens).toBe(100);
    expect(b.timing.evictedTokens).toBe(a.timing.evictedTokens);
    // the same press computed fresh, on engines that never saw the other question
    const freshA = await (await load()).generate(question(2), { ...greedy, cachePrefix });
    const freshB = await (await load()).generate(question(3), { ...greedy, cachePrefix });
    expect(a.tokens).toEqual(freshA.tokens);
    expect(b.tokens).toEqual(freshB.tokens);
    engine.checkIdle();
  });
});

describe('cache prefix', () => {
  it('kept pages are whole pages, shared read-only by requests running together', async () => {
    const engine = await load();
    const cachePrefix: CachePrefixOptions = { until: 100, press: 'knorm', ratio: 0.5 };
    await engine.generate(question(2), { ...greedy, cachePrefix });
    const rs = await Promise.all([4, 5, 6].map((s) => engine.generate(question(s), { ...greedy, cachePrefix })));
    const alone = await Promise.all([4, 5, 6].map(async (s) => (await load()).generate(question(s), { ...greedy, cachePrefix })));
    rs.forEach((r, i) => expect(r.tokens).toEqual(alone[i].tokens));
    expect(rs.every((r) => r.timing.evictedTokens === 100 - 48)).toBe(true); // keep 50 → 48 (whole pages of 16)
    engine.checkIdle();
  });

  it('persisted: a new session adopts the compressed prefix from the store', async () => {
    const persist = { store: 'memory' as const, name: `cache-prefix-${Date.now()}` };
    const cachePrefix: CachePrefixOptions = { until: 100, press: 'knorm', ratio: 0.5 };
    const first = await load({ persist });
    const a = await first.generate(question(7), { ...greedy, cachePrefix });
    await first.flush();
    const second = await load({ persist });
    const before = second.snapshot();
    const b = await second.generate(question(8), { ...greedy, cachePrefix });
    const s = second.snapshot();
    expect(s.compression.requests).toBe(0); // adopted, not computed
    expect(s.promptTokens - before.promptTokens).toBe(23);
    expect(s.tiers!.stored!.restoredTokens).toBe(48);
    const fresh = await (await load()).generate(question(8), { ...greedy, cachePrefix });
    expect(b.tokens).toEqual(fresh.tokens);
    expect(a.tokens.length).toBe(10);
  });

  it("until 'system': the chat's system message compressed once, adopted by every conversation that starts with it", async () => {
    const system = { role: 'system' as const, content: 'You are a careful assistant. You answer questions about the weather, the sea and the mountains in short plain sentences, and you never make up numbers.' };
    const chat = (q: string) => [system, { role: 'user' as const, content: q }];
    const cachePrefix: CachePrefixOptions = { until: 'system', press: 'knorm', ratio: 0.5 };
    const engine = await load();
    const prepared = await engine.prepare(chat('Is the sea cold today?'));
    const end = prepared.systemTokens!;
    engine.release(prepared);
    expect(end).toBeGreaterThan(32);
    const a = await engine.generate(chat('Is the sea cold today?'), { ...greedy, cachePrefix });
    const b = await engine.generate(chat('Will it snow on the mountains?'), { ...greedy, cachePrefix });
    expect(engine.snapshot().compression.requests).toBe(1);
    expect(b.timing.prefixHitTokens).toBe(end);
    const freshA = await (await load()).generate(chat('Is the sea cold today?'), { ...greedy, cachePrefix });
    const freshB = await (await load()).generate(chat('Will it snow on the mountains?'), { ...greedy, cachePrefix });
    expect([a.tokens, b.tokens]).toEqual([freshA.tokens, freshB.tokens]);
    // the same prefix as a token count is the same cache entry
    const c = await engine.generate(chat('And the wind?'), { ...greedy, cachePrefix: { ...cachePrefix, until: end } });
    expect(engine.snapshot().compression.requests).toBe(1);
    expect(c.timing.prefixHitTokens).toBe(end);
    await expect(engine.generate([{ role: 'user', content: 'Hello' }], { ...greedy, cachePrefix })).rejects.toThrow(/until 'system' needs chat messages that start with a system message/);
    // at ratio 0 the system message is kept as it is (its last partly filled page too): the next conversation prefills only its own turn
    const plain = { ...cachePrefix, ratio: 0 };
    await engine.generate(chat('Is the sea cold today?'), { ...greedy, cachePrefix: plain });
    const d = await engine.generate(chat('Will it rain?'), { ...greedy, cachePrefix: plain });
    expect(d.timing.prefixHitTokens).toBeGreaterThanOrEqual(end);
    expect(d.tokens).toEqual((await (await load({ prefixCache: false })).generate(chat('Will it rain?'), greedy)).tokens);
    engine.checkIdle();
  });

  it('ratio 0 is the plain prefix cache, its last partly filled page kept too: nothing compressed, only the rest prefilled, outputs equal no cache prefix at all', async () => {
    const persist = { store: 'memory' as const, name: `cache-prefix-r0-${Date.now()}` };
    const engine = await load({ persist });
    const cachePrefix: CachePrefixOptions = { until: 100, press: 'knorm', ratio: 0 };
    await engine.generate(question(2), { ...greedy, cachePrefix });
    const b = await engine.generate(question(3), { ...greedy, cachePrefix });
    expect(engine.snapshot().compression.requests).toBe(0);
    expect(b.timing.prefixHitTokens).toBe(100); // 6 whole pages of the shared 100 tokens, and the tail: tokens 96..99
    const plain = await load({ prefixCache: false });
    expect(b.tokens).toEqual((await plain.generate(question(3), greedy)).tokens);
    await engine.flush();
    const next = await load({ persist }); // a new session: the pages and the tail from the store
    const c = await next.generate(question(4), { ...greedy, cachePrefix });
    expect(c.timing.prefixHitTokens).toBe(100);
    expect(c.timing.prefixFrom).toEqual({ gpu: 0, cpu: 0, stored: 100 });
    expect(c.tokens).toEqual((await plain.generate(question(4), greedy)).tokens);
    await expect(engine.generate(question(2), { ...greedy, cachePrefix: { ...cachePrefix, press: 'nope' } })).rejects.toThrow(/nope/);
    engine.checkIdle();
  });

  it.each<[string, unknown, RegExp]>([
    ['a prefix as long as the prompt', { until: 123, press: 'knorm', ratio: 0.5 }, /must end before the prompt does/],
    ['ratio 1', { until: 100, press: 'knorm', ratio: 1 }, /ratio must be in \[0, 1\)/],
    ['a negative ratio', { until: 100, press: 'knorm', ratio: -0.5 }, /ratio must be in \[0, 1\)/],
    ['until image without one', { until: 'image', press: 'knorm', ratio: 0.5 }, /until 'image' needs a prompt with an image/],
    ['until system without chat messages', { until: 'system', press: 'knorm', ratio: 0.5 }, /until 'system' needs chat messages/],
    ['a bad until', { until: 'user', press: 'knorm', ratio: 0.5 }, /until must be 'image', 'system' or a positive token count/],
    ['too short to keep a page', { until: 20, press: 'knorm', ratio: 0.5 }, /keeps less than one page/],
    ['an unknown press', { until: 100, press: 'nope', ratio: 0.5 }, /nope/],
  ])('%s is refused, naming cache_prefix', async (_what, cachePrefix, message) => {
    const engine = await load();
    await expect(engine.generate(question(2), { ...greedy, cachePrefix: cachePrefix as CachePrefixOptions })).rejects.toThrow(message);
    await expect(engine.generate(question(2), { ...greedy, cachePrefix: { until: 100, press: 'knorm', ratio: 0.5 }, compression: { press: 'knorm', ratio: 0.5 } })).rejects.toThrow(/cache_prefix or its own compression/);
    engine.checkIdle();
  });
});
