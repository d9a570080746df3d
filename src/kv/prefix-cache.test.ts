import { describe, expect, it } from 'vitest';
import { BlockPool } from './block-pool.ts';
import { KVCacheManager } from './kv-cache-manager.ts';
import { PrefixCache, type PrefixSource } from './prefix-cache.ts';

const P = 4;

function seq(id: string, tokens: number[], extra: (s: number, c: number) => string = () => ''): PrefixSource {
  return { id, tokens: (s, c) => tokens.slice(s, s + c), extraKey: extra };
}

function setup(pages = 8) {
  const pool = new BlockPool(pages);
  const kv = new KVCacheManager(pool, P);
  return { pool, kv, cache: new PrefixCache(pool, kv) };
}

/** Allocate and "compute" a whole sequence, publish it, free it (its pages stay cached). */
function run(kv: KVCacheManager, cache: PrefixCache, s: PrefixSource, n: number, free = true): readonly number[] {
  const hit = cache.attach(s, n - 1);
  kv.allocateSlots(s.id, n - hit);
  cache.publish(s, n);
  const table = [...kv.blockTable(s.id)];
  if (free) {
    kv.free(s.id);
    cache.drop(s.id);
  }
  return table;
}

describe('PrefixCache', () => {
  it('a second sequence with the same first pages adopts them; only full pages, never the last token', () => {
    const { kv, cache, pool } = setup();
    const a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const first = run(kv, cache, seq('a', a), a.length);
    expect(cache.numCachedPages).toBe(2); // tokens 0..7; token 8-9 sit in a partial page
    const hit = cache.attach(seq('b', [...a.slice(0, 8), 42]), 8); // 9 tokens, at most 8 reusable
    expect(hit).toBe(8);
    expect(kv.blockTable('b')).toEqual(first.slice(0, 2));
    // exactly a full prompt of 8: the last token must be computed, so only 1 page
    const hit2 = cache.attach(seq('c', a.slice(0, 8)), 7);
    expect(hit2).toBe(4);
    expect(pool.refCount(first[0])).toBe(2);
    kv.checkInvariants();
    cache.checkInvariants();
  });

  it('a divergent page ends the match; the chain makes later equal pages miss', () => {
    const { kv, cache } = setup();
    run(kv, cache, seq('a', [1, 2, 3, 4, 5, 6, 7, 8, 9]), 9);
    expect(cache.attach(seq('b', [1, 2, 3, 0, 5, 6, 7, 8, 9]), 8)).toBe(0);
    expect(cache.attach(seq('c', [1, 2, 3, 4, 0, 6, 7, 8, 9]), 8)).toBe(4);
  });

  it('extra keys (image content) take part: same ids, other image ⇒ no hit', () => {
    const { kv, cache } = setup();
    const ids = [7, 7, 7, 7, 7, 7, 7, 7, 1];
    run(kv, cache, seq('a', ids, (s) => (s < 8 ? 'imageA' : '')), 9);
    expect(cache.attach(seq('b', ids, (s) => (s < 8 ? 'imageB' : '')), 8)).toBe(0);
    expect(cache.attach(seq('c', ids, (s) => (s < 8 ? 'imageA' : '')), 8)).toBe(8);
  });

  it('a cached free page handed out again by the pool leaves the cache', () => {
    const { kv, cache, pool } = setup(3);
    run(kv, cache, seq('a', [1, 2, 3, 4, 5, 6, 7, 8, 9]), 9); // 3 pages, 2 cached, all free now
    expect(cache.numCachedPages).toBe(2);
    kv.allocateSlots('x', 3 * P); // takes every page: cached contents are overwritten
    expect(cache.numCachedPages).toBe(0);
    kv.free('x');
    expect(cache.attach(seq('b', [1, 2, 3, 4, 5, 6, 7, 8, 9]), 8)).toBe(0);
    pool.checkInvariants();
    cache.checkInvariants();
  });

  it('stats count lookups, hit requests and tokens', () => {
    const { kv, cache } = setup();
    run(kv, cache, seq('a', [1, 2, 3, 4, 5]), 5);
    run(kv, cache, seq('b', [1, 2, 3, 4, 6]), 5);
    run(kv, cache, seq('c', [9, 9, 9, 9, 9]), 5);
    expect(cache.snapshot()).toEqual({ lookups: 3, hitRequests: 1, hitTokens: 4, cachedPages: 2 });
  });
});
