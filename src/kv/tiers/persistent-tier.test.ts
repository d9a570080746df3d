/**
 * The persistent tier on the memory backend (the same code path as
 * IndexedDB, whose own test runs in the browser): round trips across
 * re-opens, and every kind of bad stored data detected before use and
 * deleted — never served.
 */
import { describe, expect, it } from 'vitest';
import { KV_FORMAT_VERSION, type KvNamespace } from '../prefix-key.ts';
import { PersistentTier, type PageGeometry, type PersistentTierOptions, type StoredPageId } from './persistent-tier.ts';
import { memoryBackend, memoryStore, type KvStoreBackend } from './store-backend.ts';

const ns: KvNamespace = { modelId: 'm', modelHash: 'h1', kvDtype: 'f32', pageSize: 4, formatVersion: KV_FORMAT_VERSION };
const geometry: PageGeometry = { numLayers: 2, numKvHeads: 1, headDim: 4, pageSize: 4, dtype: 'f32', bytesPerPage: 2 * 2 * 4 * 4 * 4 };
let storeNo = 0;

function page(i: number, fill = i + 1): { id: StoredPageId; data: ArrayBuffer } {
  const data = new Float32Array(geometry.bytesPerPage / 4).map((_, j) => fill * 1000 + j);
  return { id: { key: `k${i}`, content: `content of page ${i}`, index: i }, data: data.buffer };
}

async function stored(n: number, opts: { budget?: number; name?: string } & PersistentTierOptions = {}) {
  const { budget = 1 << 20, name = `t${++storeNo}`, ...options } = opts;
  const tier = await PersistentTier.open(memoryBackend(name), ns, geometry, budget, 'pool', options);
  const pages = Array.from({ length: n }, (_, i) => page(i));
  for (const p of pages) tier.put(p.id, p.data);
  await tier.flush();
  const reopen = (o: Partial<KvNamespace> = {}, more: PersistentTierOptions & { budget?: number } = {}) => PersistentTier.open(memoryBackend(name), { ...ns, ...o }, geometry, more.budget ?? budget, 'pool', { ...options, ...more });
  return { name, tier, pages, ids: pages.map((p) => p.id), reopen };
}

const same = (a: ArrayBuffer, b: ArrayBuffer) => a.byteLength === b.byteLength && new Uint8Array(a).every((x, i) => x === new Uint8Array(b)[i]);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The data key the stored manifest of page `key` names (data keys end in a checksum, not a fixed name). */
function chunkOf(name: string, key: string): string {
  const m = [...memoryStore(name).manifests].find(([k]) => k.endsWith(`/${key}`))![1] as { chunks: { key: string }[] };
  return m.chunks[0].key;
}
const hasData = (name: string, key: string) => [...memoryStore(name).data.keys()].some((k) => k.includes(`/${key}/`));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** The memory backend with its writes wrapped (to hold one back and force an interleaving of two sessions). */
type Hook = (write: () => Promise<void>) => Promise<void>;
function hooked(name: string, hooks: { setData?: Hook; setManifests?: Hook }): KvStoreBackend {
  const b = memoryBackend(name);
  const pass: Hook = (write) => write();
  return { ...b, setData: (es) => (hooks.setData ?? pass)(() => b.setData(es)), setManifests: (es) => (hooks.setManifests ?? pass)(() => b.setManifests(es)) };
}

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
    ['a flipped byte', (name: string) => { const b = new Uint8Array(memoryStore(name).data.get(chunkOf(name, 'k1'))!); b[7] ^= 1; }],
    ['a truncated page', (name: string) => { const d = memoryStore(name).data; const k = chunkOf(name, 'k1'); d.set(k, d.get(k)!.slice(0, 10)); }],
    ['missing data', (name: string) => { memoryStore(name).data.delete(chunkOf(name, 'k1')); }],
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
    expect(hasData(name, 'k1')).toBe(false);
  });

  it('an entry without a manifest (a write cut short) is never read, and its data is collected after the grace period', async () => {
    const { name, ids, reopen } = await stored(2);
    const m = memoryStore(name).manifests;
    m.delete([...m.keys()].find((x) => x.endsWith('/k1'))!);
    const patient = await reopen(); // the default grace: nothing deleted at open
    expect(await patient.getRun(ids)).toHaveLength(1);
    expect(patient.stats().collected).toBe(0);
    expect(hasData(name, 'k1')).toBe(true);
    const tier = await reopen({}, { orphanGraceMs: 0 });
    await sleep(20);
    await tier.flush();
    expect(tier.stats().collected).toBe(1);
    expect(hasData(name, 'k1')).toBe(false);
  });

  it('data another session has written but not yet named in a manifest survives an open; an orphan still unnamed after the grace is collected', async () => {
    const name = `t${++storeNo}`;
    const gate = deferred();
    const writer = await PersistentTier.open(hooked(name, { setManifests: async (write) => { await gate.promise; await write(); } }), ns, geometry, 1 << 20);
    const p = page(0);
    writer.put(p.id, p.data);
    for (let i = 0; i < 200 && memoryStore(name).data.size === 0; i++) await sleep(5); // its data is in, its manifest held back
    expect(memoryStore(name).data.size).toBe(1);
    const inFlight = [...memoryStore(name).data.keys()][0];
    memoryStore(name).data.set(`${inFlight.slice(0, inFlight.lastIndexOf('/k0/'))}/k9/0123456789abcdef`, new ArrayBuffer(16)); // a write cut short long ago
    const reader = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20, 'pool', { orphanGraceMs: 200 });
    expect(memoryStore(name).data.size).toBe(2); // nothing deleted at open
    gate.resolve(); // the writer's manifest lands within the grace period
    await writer.flush();
    await sleep(400);
    await reader.flush();
    expect(reader.stats().collected).toBe(1);
    expect([...memoryStore(name).data.keys()]).toEqual([inFlight]);
    const again = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20);
    const got = await again.getRun([p.id]);
    expect(got).toHaveLength(1);
    expect(same(got[0], p.data)).toBe(true);
    expect(again.stats().verifyFailures).toBe(0);
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

  it("another model's entries are kept while recent and collected at open once unused for longer than the max age", async () => {
    const name = `t${++storeNo}`;
    const day = 24 * 3600_000;
    const now = Date.now();
    const storeAs = async (modelId: string, when: number, n: number) => {
      const t = await PersistentTier.open(memoryBackend(name), { ...ns, modelId }, geometry, 1 << 20, 'pool', { now: () => when });
      for (let i = 0; i < n; i++) t.put(page(i).id, page(i).data);
      await t.flush();
    };
    await storeAs('recent', now - day, 1);
    await storeAs('old', now - 9 * day, 2);
    expect(memoryStore(name).manifests.size).toBe(3);
    const ours = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20, 'pool', { now: () => now });
    expect(ours.stats().collected).toBe(2); // model 'old': 9 days > 7; model 'recent' (1 day) stays
    expect([...memoryStore(name).manifests.values()].map((m) => (m as { ns: KvNamespace }).ns.modelId)).toEqual(['recent']);
    expect(memoryStore(name).data.size).toBe(1);
    const strict = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20, 'pool', { now: () => now, foreignMaxAgeMs: day / 2 });
    expect(strict.stats().collected).toBe(1);
    expect(memoryStore(name).manifests.size + memoryStore(name).data.size).toBe(0);
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

  it('a hit is stored as used: the next session evicts the least recently used page, not the oldest written', async () => {
    let t = 1_000_000;
    const now = () => t;
    const { ids, reopen } = await stored(3, { budget: 3 * geometry.bytesPerPage, now }); // written together: one lastUsed
    t += 1000;
    const second = await reopen();
    expect(await second.getRun(ids.slice(0, 1))).toHaveLength(1);
    await second.flush();
    t += 1000;
    const third = await reopen();
    expect(third.list().find((e) => e.key === 'k0')!.lastUsed).toBe(1_001_000);
    const p = page(3);
    third.put(p.id, p.data);
    await third.flush();
    expect(third.list().map((e) => e.key).sort()).toEqual(['k0', 'k2', 'k3']); // k1 went: k0 was used after it
    expect(third.stats().evicted).toBe(1);
  });

  it("a read never waits for the lastUsed write, and an entry deleted meanwhile is not written back", async () => {
    const name = `t${++storeNo}`;
    await stored(2, { name });
    const gate = deferred();
    const tier = await PersistentTier.open(hooked(name, { setManifests: async (write) => { await gate.promise; await write(); } }), ns, geometry, 1 << 20);
    expect(await tier.getRun([page(0).id, page(1).id])).toHaveLength(2); // its lastUsed writes are held back by the gate
    expect(await tier.getRun([{ ...page(1).id, index: 5 }])).toHaveLength(0); // k1 under the wrong position: rejected and deleted
    gate.resolve();
    await tier.flush();
    expect([...memoryStore(name).manifests.keys()].map((k) => k.slice(k.lastIndexOf('/') + 1))).toEqual(['k0']);
    expect(hasData(name, 'k1')).toBe(false);
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

  it('two sessions storing one page with different bytes at once leave one valid entry (data, data, manifest, manifest)', async () => {
    const name = `t${++storeNo}`;
    const aData = deferred();
    const bManifest = deferred();
    // A writes its data first and its manifest last: each manifest would otherwise name the other session's bytes
    const a = await PersistentTier.open(hooked(name, { setData: async (write) => { await write(); aData.resolve(); }, setManifests: async (write) => { await bManifest.promise; await write(); } }), ns, geometry, 1 << 20);
    const b = await PersistentTier.open(hooked(name, { setData: async (write) => { await aData.promise; await write(); }, setManifests: async (write) => { await write(); bManifest.resolve(); } }), ns, geometry, 1 << 20);
    const pa = page(0, 1);
    const pb = page(0, 2); // the same page, other bytes (another run's rounding)
    a.put(pa.id, pa.data);
    b.put(pb.id, pb.data);
    await Promise.all([a.flush(), b.flush()]);
    expect(memoryStore(name).manifests.size).toBe(1);
    const c = await PersistentTier.open(memoryBackend(name), ns, geometry, 1 << 20, 'pool', { orphanGraceMs: 0 });
    const got = await c.getRun([pa.id]);
    expect(got).toHaveLength(1);
    expect(same(got[0], pa.data) || same(got[0], pb.data)).toBe(true);
    expect(c.stats()).toMatchObject({ entries: 1, verifyFailures: 0 });
    await sleep(20);
    await c.flush();
    expect(c.stats().collected).toBe(1); // the other session's bytes, named by no manifest
    expect([...memoryStore(name).data.keys()]).toEqual([chunkOf(name, 'k0')]);
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
