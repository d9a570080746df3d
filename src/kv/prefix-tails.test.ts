/**
 * Prefix tails on a simulated pool: the partly filled page where a prefix
 * ends is saved once (a download), adopted into a fresh private page (an
 * upload of exactly those bytes), and named by everything that decides its
 * K/V — the full pages before it, its own tokens and their extra keys.
 */
import { describe, expect, it } from 'vitest';
import { KVCacheManager } from './kv-cache-manager.ts';
import type { PrefixSource } from './prefix-key.ts';
import { CpuTier } from './tiers/cpu-tier.ts';

const P = 4;
const PAGE_BYTES = 64;

function manager(): KVCacheManager {
  return KVCacheManager.simulated(16, P, true, { tier: new CpuTier(1 << 16), pageBytes: PAGE_BYTES });
}

function source(ids: number[], image = 'img-a'): PrefixSource {
  return { tokens: (s, n) => ids.slice(s, s + n), extraKey: (s, n) => (s < 6 && s + n > 2 ? `${image}@${Math.max(s, 2)}` : '') };
}

/** Runs a sequence's prefill of `ids` and publishes it, as the scheduler does; returns the downloads it queued, delivered. */
function prefill(kv: KVCacheManager, id: string, src: PrefixSource, n: number, tailEnd: number): ArrayBuffer[] {
  expect(kv.allocateSlots(id, n)).toBe(true);
  kv.cacheFullPages(id, src, n);
  kv.saveTail(id, src, tailEnd);
  const { downloads } = kv.drainTransfers();
  return downloads.map((d, i) => {
    const data = new Uint8Array(PAGE_BYTES).fill(d.page + 10 * (i + 1)).buffer;
    d.done(data);
    return data;
  });
}

describe('prefix tails', () => {
  const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

  it('saved once, adopted into a fresh page with the saved bytes; only the question is left to prefill', () => {
    const kv = manager();
    const src = source(ids);
    const [saved] = prefill(kv, 'a', src, 11, 6); // the picture ends at token 6, inside page 1
    expect(saved).toBeDefined();
    expect(prefill(kv, 'a2', source([...ids.slice(0, 6), 42, 43, 44]), 0, 6)).toEqual([]); // nothing computed past 6 yet: nothing saved

    const other = source([...ids.slice(0, 6), 99, 98, 97]); // another question after the same picture
    expect(kv.cachedPrefixTokens(other, 8, [6])).toBe(6);
    expect(kv.getComputedPages('b', other, 8)).toBe(4); // page 0 from the GPU cache
    expect(kv.adoptTail('b', other, 6)).toBe(true);
    expect(kv.numTokens('b')).toBe(6);
    const { uploads } = kv.drainTransfers();
    expect(uploads).toHaveLength(1);
    expect(uploads[0].data).toBe(saved);
    expect(uploads[0].page).toBe(kv.blockTable('b')[1]);
    expect(kv.blockTable('b')[1]).not.toBe(kv.blockTable('a')[1]); // private: the adopter writes its own tokens after the tail
    kv.checkInvariants();
  });

  it('another picture, other tokens before it, or a boundary on a page edge: no tail', () => {
    const kv = manager();
    prefill(kv, 'a', source(ids), 11, 6);
    const probe = (src: PrefixSource, id: string) => {
      kv.getComputedPages(id, src, 8);
      return kv.adoptTail(id, src, 6);
    };
    expect(probe(source(ids, 'img-b'), 'b')).toBe(false);
    expect(probe(source([1, 2, 3, 4, 5, 7, ...ids.slice(6)]), 'c')).toBe(false); // same full page, another tail token
    expect(probe(source([0, ...ids.slice(1)]), 'd')).toBe(false); // another first page: another parent
    expect(kv.cachedPrefixTokens(source(ids), 10, [8])).toBe(8); // 8 is a page edge: full pages only
    kv.checkInvariants();
  });

  it('a sequence that does not hold exactly the pages before the tail cannot adopt it, and the pool is left as it was', () => {
    const kv = manager();
    prefill(kv, 'a', source(ids), 11, 6);
    expect(kv.allocateSlots('x', 2)).toBe(true);
    const free = kv.numFreePages;
    expect(kv.adoptTail('x', source(ids), 6)).toBe(false);
    expect(kv.numFreePages).toBe(free);
    expect(kv.drainTransfers().uploads).toEqual([]);
  });
});
