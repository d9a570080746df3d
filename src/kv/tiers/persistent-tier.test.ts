/**
 * The persistent tier on the memory backend (the same code path as
 * IndexedDB, whose own test runs in the browser): round trips across
 * re-opens, and every kind of bad stored data detected before use and
 * deleted — never served.
 */
import { describe, expect, it } from 'vitest';
import { KV_FORMAT_VERSION, type KvNamespace } from '../prefix-key.ts';
import { PersistentTier, type PageGeometry, type StoredPageId } from './persistent-tier.ts';
import { memoryBackend, memoryStore } from './store-backend.ts';

const ns: KvNamespace = { modelId: 'm', modelHash: 'h1', kvDtype: 'f32', pageSize: 4, formatVersion: KV_FORMAT_VERSION };
const geometry: PageGeometry = { numLayers: 2, numKvHeads: 1, headDim: 4, pageSize: 4, dtype: 'f32', bytesPerPage: 2 * 2 * 4 * 4 * 4 };
let storeNo = 0;

function page(i: number, fill = i + 1): { id: StoredPageId; data: ArrayBuffer } {
  const data = new Float32Array(geometry.bytesPerPage / 4).map((_, j) => fill * 1000 + j);
  return { id: { key: `k${i}`, content: `content of page ${i}`, index: i }, data: data.buffer };
}

async function stored(n: number, opts: { budget?: number; name?: string } = {}) {
  const name = opts.name ?? `t${++storeNo}`;
  const tier = await PersistentTier.open(memoryBackend(name), ns, geometry, opts.budget ?? 1 << 20);
  const pages = Array.from({ length: n }, (_, i) => page(i));
  for (const p of pages) tier.put(p.id, p.data);
  await tier.flush();
  return { name, tier, pages, ids: pages.map((p) => p.id), reopen: (o: Partial<KvNamespace> = {}) => PersistentTier.open(memoryBackend(name), { ...ns, ...o }, geometry, opts.budget ?? 1 << 20) };
}

const same = (a: ArrayBuffer, b: ArrayBuffer) => a.byteLength === b.byteLength && new Uint8Array(a).every((x, i) => x === new Uint8Array(b)[i]);

describe('PersistentTier', () => {
  it('gives back exactly what it stored, after a re-open (a new session)', async () => {
    const { tier, pages, ids, reopen } = await stored(5);
    expect(tier.stats()).toMatchObject({ entries: 5, written: 5, bytes: 5 * geometry.bytesPerPage });
    const again = await reopen();
    const got = await again.getRun(ids);
    expect(got).toHaveLength(5);
    got.forEach((d, i) => expect(same(d, pages[i].data)).toBe(true));
    expect(again.stats()).toMatchObject({ hits: 5, misses: 0, verifyFailures: 0 });
    expect(again.list().map((e) => e.key).sort()).toEqual(ids.map((i) => i.key).sort());
  });

  it('stops at the first page it does not have', async () => {
    const { tier, ids } = await stored(3);
    const got = await tier.getRun([...ids.slice(0, 2), { key: 'nope', content: 'x', index: 2 }, ids[2]]);
    expect(got).toHaveLength(2);
  });

  it.each([
    ['a flipped byte', (name: string) => { const d = memoryStore(name).data; const k = [...d.keys()].find((x) => x.endsWith('k1/0'))!; const b = new Uint8Array(d.get(k)!); b[7] ^= 1; }],
    ['a truncated page', (name: string) => { const d = memoryStore(name).data; const k = [...d.keys()].find((x) => x.endsWith('k1/0'))!; d.set(k, d.get(k)!.slice(0, 10)); }],
    ['missing data', (name: string) => { const d = memoryStore(name).data; d.delete([...d.keys()].find((x) => x.endsWith('k1/0'))!); }],
    ['a manifest whose shapes disagree', (name: string) => { const m = memoryStore(name).manifests; const k = [...m.keys()].find((x) => x.endsWith('/k1'))!; (m.get(k) as { geometry: { headDim: number } }).geometry.headDim = 8; }],
    ['a manifest whose position disagrees', (name: string) => { const m = memoryStore(name).manifests; const k = [...m.keys()].find((x) => x.endsWith('/k1'))!; (m.get(k) as { positions: number[] }).positions = [0, 4]; }],
  ])('%s: detected, never served, deleted', async (_what, damage) => {
    const { name, ids, reopen } = await stored(3);
    damage(name);
    const tier = await reopen();
    const got = await tier.getRun(ids);
    expect(got).toHaveLength(1); // page 0 only: the run stops at the bad page
    expect(tier.stats().verifyFailures).toBe(1);
    expect(tier.list().map((e) => e.key)).not.toContain('k1');
    expect([...memoryStore(name).manifests.keys()].some((k) => k.endsWith('/k1'))).toBe(false);
    expect([...memoryStore(name).data.keys()].some((k) => k.endsWith('/k1/0'))).toBe(false);
  });

  it('an entry without a manifest (a write cut short) is never read, and its data is collected', async () => {
    const { name, ids, reopen } = await stored(2);
    const m = memoryStore(name).manifests;
    m.delete([...m.keys()].find((x) => x.endsWith('/k1'))!);
    const tier = await reopen();
    expect(await tier.getRun(ids)).toHaveLength(1);
    expect(tier.stats().collected).toBe(1);
    expect([...memoryStore(name).data.keys()].some((k) => k.endsWith('/k1/0'))).toBe(false);
  });

  it('a content string that differs under the same key (a hash collision) is a miss, not a hit', async () => {
    const { tier, ids } = await stored(2);
    expect(await tier.getRun([{ ...ids[0], content: 'other' }])).toHaveLength(0);
    expect(tier.stats().entries).toBe(2);
  });

  it('entries of another model are ignored; a stale version of this model and older formats are collected', async () => {
    const { name, ids } = await stored(2);
    const other = await PersistentTier.open(memoryBackend(name), { ...ns, modelId: 'other' }, geometry, 1 << 20);
    expect(await other.getRun(ids)).toHaveLength(0);
    expect(other.stats()).toMatchObject({ entries: 0, collected: 0 });
    const newer = await PersistentTier.open(memoryBackend(name), { ...ns, modelHash: 'h2' }, geometry, 1 << 20);
    expect(newer.stats().collected).toBe(2);
    expect(memoryStore(name).manifests.size).toBe(0);
    expect(memoryStore(name).data.size).toBe(0);
    const old = await stored(2);
    const next = await PersistentTier.open(memoryBackend(old.name), { ...ns, modelId: 'another', formatVersion: KV_FORMAT_VERSION + 1 }, geometry, 1 << 20);
    expect(next.stats().collected).toBe(2); // an older format, whatever the model
  });

  it('keeps its byte budget, least recently used first', async () => {
    const { tier, ids } = await stored(3, { budget: 3 * geometry.bytesPerPage });
    await tier.getRun(ids.slice(0, 1)); // page 0 is now the most recent
    const p = page(3);
    tier.put(p.id, p.data);
    await tier.flush();
    expect(tier.list().map((e) => e.key).sort()).toEqual(['k0', 'k2', 'k3']);
    expect(tier.stats()).toMatchObject({ evicted: 1, bytes: 3 * geometry.bytesPerPage });
  });

  it('a full disk: evicts the oldest and retries once; a second failure skips the write and serving goes on', async () => {
    const { name, tier } = await stored(2);
    const quota = () => Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
    memoryStore(name).failWrites.push(quota());
    tier.put(page(2).id, page(2).data);
    await tier.flush();
    expect(tier.stats()).toMatchObject({ written: 3, evicted: 1, refusedWrites: 1, skippedWrites: 0 });
    memoryStore(name).failWrites.push(quota(), quota());
    tier.put(page(3).id, page(3).data);
    await tier.flush();
    expect(tier.stats()).toMatchObject({ refusedWrites: 3, skippedWrites: 1 });
    expect(tier.has('k3')).toBe(false);
    expect((await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20)).list().length).toBe(tier.list().length);
  });

  it('a refused manifest write takes its data back out: no orphaned bytes, and the retry after evicting lands', async () => {
    const { name, tier } = await stored(2);
    const quota = () => Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
    memoryStore(name).failWrites.push(null, quota()); // the data fits, its manifest does not
    tier.put(page(2).id, page(2).data);
    await tier.flush();
    expect(tier.stats()).toMatchObject({ written: 3, refusedWrites: 1, evicted: 1, skippedWrites: 0 });
    expect(memoryStore(name).data.size).toBe(memoryStore(name).manifests.size);
  });

  it('once evicting did not make room, later refused writes are skipped without evicting more (the store stays)', async () => {
    const { name, tier } = await stored(3);
    const quota = () => Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
    memoryStore(name).failWrites.push(quota(), quota());
    tier.put(page(3).id, page(3).data);
    await tier.flush();
    expect(tier.stats()).toMatchObject({ evicted: 1, skippedWrites: 1, entries: 2 });
    memoryStore(name).failWrites.push(quota());
    tier.put(page(4).id, page(4).data);
    await tier.flush();
    expect(tier.stats()).toMatchObject({ evicted: 1, skippedWrites: 2, entries: 2 }); // nothing more lost
    tier.put(page(5).id, page(5).data); // the store takes writes again
    await tier.flush();
    expect(tier.stats()).toMatchObject({ skippedWrites: 2, entries: 3 });
    expect(memoryStore(name).data.size).toBe(memoryStore(name).manifests.size);
  });

  it('two sessions storing the same pages at once leave one valid entry per page', async () => {
    const name = `t${++storeNo}`;
    const [a, b] = await Promise.all([0, 1].map(() => PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20)));
    const pages = Array.from({ length: 4 }, (_, i) => page(i));
    for (const p of pages) {
      a.put(p.id, p.data);
      b.put(p.id, p.data.slice(0));
    }
    await Promise.all([a.flush(), b.flush()]);
    expect(memoryStore(name).manifests.size).toBe(4);
    expect(memoryStore(name).data.size).toBe(4);
    const c = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20);
    const got = await c.getRun(pages.map((p) => p.id));
    expect(got).toHaveLength(4);
    expect(c.stats()).toMatchObject({ verifyFailures: 0, collected: 0 });
  });

  it('refuses a bad budget, naming the option', async () => {
    for (const b of [0, -1, 1.5, Number.NaN, '1' as unknown as number]) {
      await expect(PersistentTier.open(memoryBackend('bad'), ns, geometry, b)).rejects.toThrow(/persist.budgetBytes must be a positive integer/);
    }
  });
});

describe('the int8 storage codec', () => {
  const g = { numLayers: 2, numKvHeads: 3, headDim: 8, pageSize: 4, dtype: 'f32' as const };
  const bytesPerPage = g.numLayers * 2 * g.numKvHeads * g.pageSize * g.headDim * 4;

  it('round-trips a page within half a quantization step per value, in about a quarter of the bytes', async () => {
    const { decodeStoredPage, encodeStoredPage, storedBytes } = await import('./page-codec.ts');
    const r = (() => { let s = 7; return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 6; })();
    const values = Float32Array.from({ length: bytesPerPage / 4 }, r);
    values[5] = Number.NaN; // non-finite values are stored as 0
    const stored = encodeStoredPage(g, 'int8', values.buffer);
    expect(stored.byteLength).toBe(storedBytes(g, 'int8'));
    expect(stored.byteLength / bytesPerPage).toBeLessThan(0.3);
    const back = new Float32Array(decodeStoredPage(g, 'int8', stored));
    const group = g.pageSize * g.headDim;
    for (let gi = 0; gi < back.length / group; gi++) {
      const xs = values.subarray(gi * group, (gi + 1) * group).filter(Number.isFinite);
      const step = Math.max(...xs.map(Math.abs)) / 127;
      for (let i = 0; i < group; i++) {
        const x = values[gi * group + i];
        expect(Math.abs(back[gi * group + i] - (Number.isFinite(x) ? x : 0))).toBeLessThanOrEqual(step / 2 + 1e-6);
      }
    }
  });

  it('entries of another codec are another namespace: an int8 store never answers an exact one', async () => {
    const name = `codec-${++storeNo}`;
    const geo = { ...g, bytesPerPage };
    const int8 = await PersistentTier.open(memoryBackend(name), ns, geo, 1 << 20, 'int8');
    const data = new Float32Array(bytesPerPage / 4).map((_, i) => Math.sin(i));
    int8.put({ key: 'k0', content: 'c0', index: 0 }, data.buffer);
    await int8.flush();
    expect(int8.stats().bytes).toBeLessThan(bytesPerPage * 0.3);
    const exact = await PersistentTier.open(memoryBackend(name), ns, geo, 1 << 20, 'pool');
    expect(await exact.getRun([{ key: 'k0', content: 'c0', index: 0 }])).toHaveLength(0);
    const again = await PersistentTier.open(memoryBackend(name), ns, geo, 1 << 20, 'int8');
    expect(await again.getRun([{ key: 'k0', content: 'c0', index: 0 }])).toHaveLength(1);
    await expect(PersistentTier.open(memoryBackend(name), ns, geo, 1 << 20, 'zip' as 'int8')).rejects.toThrow(/persist.codec must be 'pool' or 'int8'/);
  });
});
