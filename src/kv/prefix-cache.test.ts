import { describe, expect, it } from 'vitest';
import { BlockPool } from './block-pool.ts';
import { KVCacheManager } from './kv-cache-manager.ts';
import { KV_FORMAT_VERSION, namespaceId, type KvNamespace, type PrefixSource } from './prefix-key.ts';

const P = 4;
const NS: KvNamespace = { modelId: 'm', modelHash: 'h', kvDtype: 'f32', pageSize: P, formatVersion: KV_FORMAT_VERSION };

function seq(tokens: number[], extra: (s: number, c: number) => string = () => ''): PrefixSource {
  return { tokens: (s, c) => tokens.slice(s, s + c), extraKey: extra };
}

function setup(pages = 8, ns = NS) {
  const pool = new BlockPool(pages);
  return { pool, kv: new KVCacheManager(pool, P, ns) };
}

/** Allocate and "compute" a whole sequence, publish it, free it (its pages stay cached). */
function run(kv: KVCacheManager, id: string, s: PrefixSource, n: number, free = true): readonly number[] {
  const hit = kv.getComputedPages(id, s, n - 1);
  kv.allocateSlots(id, n - hit);
  kv.cacheFullPages(id, s, n);
  const table = [...kv.blockTable(id)];
  if (free) kv.free(id);
  return table;
}

describe('PrefixCache (inside KVCacheManager)', () => {
  it('a second sequence with the same first pages adopts them; only full pages, never the last token', () => {
    const { kv, pool } = setup();
    const a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const first = run(kv, 'a', seq(a), a.length);
    expect(kv.prefixStats().cachedPages).toBe(2); // tokens 0..7; token 8-9 sit in a partial page
    const hit = kv.getComputedPages('b', seq([...a.slice(0, 8), 42]), 8); // 9 tokens, at most 8 reusable
    expect(hit).toBe(8);
    expect(kv.blockTable('b')).toEqual(first.slice(0, 2));
    // exactly a full prompt of 8: the last token must be computed, so only 1 page
    const hit2 = kv.getComputedPages('c', seq(a.slice(0, 8)), 7);
    expect(hit2).toBe(4);
    expect(pool.refCount(first[0])).toBe(2);
    expect(kv.sequence('b')).toMatchObject({ numSlots: 8, positionOffset: 0, compressed: false });
    kv.checkInvariants();
  });

  it('a divergent page ends the match; the chain makes later equal pages miss', () => {
    const { kv } = setup();
    run(kv, 'a', seq([1, 2, 3, 4, 5, 6, 7, 8, 9]), 9);
    expect(kv.getComputedPages('b', seq([1, 2, 3, 0, 5, 6, 7, 8, 9]), 8)).toBe(0);
    expect(kv.getComputedPages('c', seq([1, 2, 3, 4, 0, 6, 7, 8, 9]), 8)).toBe(4);
  });

  it('extra keys (image content) take part: same ids, other image ⇒ no hit', () => {
    const { kv } = setup();
    const ids = [7, 7, 7, 7, 7, 7, 7, 7, 1];
    run(kv, 'a', seq(ids, (s) => (s < 8 ? 'imageA' : '')), 9);
    expect(kv.getComputedPages('b', seq(ids, (s) => (s < 8 ? 'imageB' : '')), 8)).toBe(0);
    expect(kv.getComputedPages('c', seq(ids, (s) => (s < 8 ? 'imageA' : '')), 8)).toBe(8);
  });

  it('keys are namespaced: another model hash, KV dtype or format version never shares a key', () => {
    const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const keyIn = (ns: KvNamespace) => {
      const { kv } = setup(8, ns);
      kv.allocateSlots('a', 9);
      return kv.prefixKey('a', seq(ids), 2)!;
    };
    const base = keyIn(NS);
    expect(base.namespace).toBe(namespaceId(NS));
    expect(base.chain).toHaveLength(2);
    expect(keyIn({ ...NS }).chain).toEqual(base.chain); // deterministic
    for (const other of [{ ...NS, modelHash: 'h2' }, { ...NS, modelId: 'm2' }, { ...NS, kvDtype: 'f16' as const }, { ...NS, formatVersion: KV_FORMAT_VERSION + 1 }]) {
      const k = keyIn(other);
      expect(k.namespace).not.toBe(base.namespace);
      expect(k.chain.some((c, i) => c === base.chain[i])).toBe(false);
    }
    expect(() => new KVCacheManager(new BlockPool(4), P, { ...NS, pageSize: 8 })).toThrow(/pageSize/);
  });

  it('a cached free page handed out again by the pool leaves the cache', () => {
    const { kv, pool } = setup(3);
    run(kv, 'a', seq([1, 2, 3, 4, 5, 6, 7, 8, 9]), 9); // 3 pages, 2 cached, all free now
    expect(kv.prefixStats().cachedPages).toBe(2);
    kv.allocateSlots('x', 3 * P); // takes every page: cached contents are overwritten
    expect(kv.prefixStats()).toMatchObject({ cachedPages: 0, reusedPages: 2 });
    expect(kv.drainReusedPages()).toHaveLength(2);
    kv.free('x');
    expect(kv.getComputedPages('b', seq([1, 2, 3, 4, 5, 6, 7, 8, 9]), 8)).toBe(0);
    pool.checkInvariants();
    kv.checkInvariants();
  });

  it('a compacted (compressed) sequence is never published', () => {
    const { kv } = setup();
    kv.allocateSlots('a', 12);
    kv.compact('a', 8);
    kv.cacheFullPages('a', seq([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), 12);
    expect(kv.prefixStats().cachedPages).toBe(0);
  });

  it('stats count lookups, hit requests and tokens', () => {
    const { kv } = setup();
    run(kv, 'a', seq([1, 2, 3, 4, 5]), 5);
    run(kv, 'b', seq([1, 2, 3, 4, 6]), 5);
    run(kv, 'c', seq([9, 9, 9, 9, 9]), 5);
    expect(kv.prefixStats()).toEqual({ lookups: 3, hitRequests: 1, hitTokens: 4, hitPages: 1, missPages: 2, cachedPages: 2, reusedPages: 0 });
  });
});
