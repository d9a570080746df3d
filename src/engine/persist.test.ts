/**
 * Prefix pages that outlive the engine: written through to the persistent
 * tier, read back by a new engine (a new session) on the same store —
 * IndexedDB in the browser project, the memory backend in Node — verified
 * before use. Lossless (= no cache at all, token for token); bad stored data
 * is detected, deleted and recomputed; a failing store never fails a request.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inBrowser, rng, testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { memoryStore } from '../kv/tiers/store-backend.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { Gpu } from '../gpu/context.ts';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

let storeNo = 0;
const open: Engine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.destroy()));
});

async function load(persist: EngineOptions['persist'] | undefined, model = 'tiny-llama-gqa', extra: EngineOptions = {}): Promise<Engine> {
  const e = await Engine.load(gpu, modelRef(model), { kvPages: 32, pageSize: 16, ...(persist ? { persist } : {}), ...extra });
  open.push(e);
  return e;
}

function prompt(seed: number, n: number): number[] {
  const r = rng(seed);
  return [1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(r() * 500))];
}

const greedy = { maxTokens: 12, ignoreEos: true };

describe('persistent prefix pages', () => {
  it(`a new session on the same store (${inBrowser ? 'IndexedDB' : 'memory'}) serves the prefix from it, token for token`, async () => {
    const persist = { store: inBrowser ? ('indexeddb' as const) : ('memory' as const), name: `persist-test-${++storeNo}-${Date.now()}` };
    const ids = prompt(1, 90);
    const plain = await (await load(undefined, 'tiny-llama-gqa', { prefixCache: false })).generate(ids, greedy);
    const first = await load(persist);
    const a = await first.generate(ids, greedy);
    await first.flush();
    expect(first.snapshot().tiers!.stored!.written).toBe(6); // the full pages of 90 prompt + 11 computed output tokens
    expect((await first.cache.list()).map((e) => e.tokens)).toEqual([16, 16, 16, 16, 16, 16]);
    await first.destroy();
    open.splice(open.indexOf(first), 1);

    const second = await load(persist);
    const before = second.snapshot();
    const b = await second.generate(ids, greedy);
    const s = second.snapshot();
    expect(b.tokens).toEqual(a.tokens);
    expect(b.tokens).toEqual(plain.tokens);
    expect(s.tiers!.stored!.restoredTokens).toBe(80); // 5 pages of the 89 tokens before the last
    expect(s.tiers!.stored!.hits).toBe(5);
    expect(s.promptTokens - before.promptTokens).toBe(10); // only the rest of the prompt was prefilled
    expect(b.timing.prefixHitTokens).toBe(80);
    expect(b.timing.prefixFrom).toEqual({ gpu: 0, cpu: 0, stored: 80 });
    const c = await second.generate(ids, greedy);
    expect(c.timing.prefixFrom).toEqual({ gpu: 80, cpu: 0, stored: 0 }); // now in the pool
    const usage = await second.cache.usage();
    expect(usage.stored).toMatchObject({ entries: 6 });
    second.checkIdle();
    expect(await second.cache.clear()).toBe(6);
    expect(await second.cache.list()).toEqual([]);
    const third = await load(persist); // cleared: a later session starts cold
    await third.generate(ids, greedy);
    expect(third.snapshot().tiers!.stored!.restoredTokens).toBe(0);
  });

  type Damage = (data: Map<string, ArrayBuffer>, k: string, manifest: { geometry: { headDim: number } }, dropManifest: () => void) => void;
  it.each<[string, Damage, number]>([
    ['a flipped byte', (data, k) => void (new Uint8Array(data.get(k)!)[3] ^= 0x10), 1],
    ['a truncated page', (data, k) => void data.set(k, data.get(k)!.slice(0, 100)), 1],
    ['a missing page', (data, k) => void data.delete(k), 1],
    ['a manifest whose shapes disagree', (_d, _k, m) => void (m.geometry.headDim *= 2), 1],
    ['a missing manifest (a write cut short)', (_d, _k, _m, drop) => drop(), 0], // never read at all: a miss, not a failure
  ])('%s in the store: detected, never uploaded, deleted, recomputed — same output', async (_what, damage, failures) => {
    const persist = { store: 'memory' as const, name: `persist-bad-${++storeNo}` };
    const ids = prompt(2, 70);
    const first = await load(persist);
    const a = await first.generate(ids, greedy);
    await first.flush();
    const data = memoryStore(persist.name).data;
    const keys = [...data.keys()].sort();
    const stored = first.snapshot().tiers!.stored!;
    expect(stored.written).toBeGreaterThanOrEqual(4);
    // damage the page holding tokens 16..31 (manifests name their chunk; find it by position)
    const manifests = memoryStore(persist.name).manifests;
    const [mk, m] = [...manifests].find(([, x]) => (x as { index: number }).index === 1) as [string, { chunks: { key: string }[]; geometry: { headDim: number } }];
    expect(keys).toContain(m.chunks[0].key);
    damage(data, m.chunks[0].key, m, () => manifests.delete(mk));
    const second = await load(persist);
    const b = await second.generate(ids, greedy);
    const s = second.snapshot().tiers!.stored!;
    expect(b.tokens).toEqual(a.tokens);
    expect(s.restoredTokens).toBe(16); // page 0 only
    expect(s.verifyFailures).toBe(failures);
    await second.flush();
    expect(second.snapshot().tiers!.stored!.written).toBeGreaterThanOrEqual(1); // the recomputed page is stored again
    expect((await second.cache.list()).some((e) => e.key === (m as unknown as { key: string }).key)).toBe(true);
  });

  it('another model on the same store finds nothing of the first one; a full store never fails a request', async () => {
    const persist = { store: 'memory' as const, name: `persist-other-${++storeNo}` };
    const ids = prompt(3, 60);
    const first = await load(persist);
    await first.generate(ids, greedy);
    await first.flush();
    const other = await load(persist, 'tiny-llama-hd32');
    await other.generate(ids, greedy);
    expect(other.snapshot().tiers!.stored!.restoredTokens).toBe(0);
    const quota = () => Object.assign(new Error('full'), { name: 'QuotaExceededError' });
    memoryStore(persist.name).failWrites.push(quota(), quota(), quota(), quota());
    const r = await other.generate(prompt(4, 60), greedy);
    await other.flush();
    expect(r.tokens.length).toBe(12);
    expect(other.snapshot().tiers!.stored!.skippedWrites).toBeGreaterThan(0);
    other.checkIdle();
  });

  it('the int8 codec: a quarter of the bytes, restored in the next session (lossy: agreement reported)', async () => {
    const name = `persist-int8-${++storeNo}`;
    const ids = prompt(5, 90);
    const plain = await (await load(undefined, 'tiny-llama-gqa', { prefixCache: false })).generate(ids, greedy);
    const exact = await load({ store: 'memory', name: `${name}-exact` });
    await exact.generate(ids, greedy);
    await exact.flush();
    const first = await load({ store: 'memory', name, codec: 'int8' });
    await first.generate(ids, greedy);
    await first.flush();
    const [e, q] = [exact, first].map((x) => x.snapshot().tiers!.stored!);
    expect(q.entries).toBe(e.entries);
    expect(q.bytes / e.bytes).toBeLessThan(0.3); // f32 pool pages (4 B per value) → 1 B per value + scales
    const second = await load({ store: 'memory', name, codec: 'int8' });
    const b = await second.generate(ids, greedy);
    expect(second.snapshot().tiers!.stored!.restoredTokens).toBe(80);
    const agree = b.tokens.filter((t, i) => t === plain.tokens[i]).length;
    console.log(`int8 stored pages: ${q.bytes} B vs ${e.bytes} B exact (${(q.bytes / e.bytes).toFixed(3)}×); greedy agreement with no cache ${agree}/${plain.tokens.length}`);
    expect(b.tokens).toHaveLength(12);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['an unknown store', { persist: { store: 'disk' } }, /persist.store must be 'indexeddb' or 'memory', got "disk"/],
    ['a negative budget', { persist: { store: 'memory', budgetBytes: -5 } }, /persist.budgetBytes must be a positive integer/],
    ['a non-numeric budget', { persist: { store: 'memory', budgetBytes: '1GB' } }, /persist.budgetBytes must be a positive integer/],
    ['an unknown codec', { persist: { store: 'memory', codec: 'zip' } }, /persist.codec must be 'pool' or 'int8', got "zip"/],
    ['no CPU tier', { persist: { store: 'memory' }, cpuCacheBytes: 0 }, /persist needs the prefix cache and the CPU tier/],
    ['no prefix cache', { persist: { store: 'memory' }, prefixCache: false }, /persist needs the prefix cache and the CPU tier/],
  ])('%s is refused at load, naming the option, and frees what was allocated', async (_, opts, message) => {
    const before = gpu.memory.snapshot().bytes;
    await expect(Engine.load(gpu, modelRef('tiny-llama-gqa'), { kvPages: 4, ...opts })).rejects.toThrow(message);
    expect(gpu.memory.snapshot().bytes).toBe(before);
  });
});
