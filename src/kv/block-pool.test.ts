import { describe, expect, it } from 'vitest';
import { rng } from '../../test/gpu.ts';
import { BlockPool } from './block-pool.ts';

describe('BlockPool', () => {
  it('starts with every page free, in id order', () => {
    const p = new BlockPool(5);
    expect([p.numFree, p.numUsed, p.peakUsed]).toEqual([5, 0, 0]);
    expect(p.freePages()).toEqual([0, 1, 2, 3, 4]);
    p.checkInvariants();
  });

  it('allocates from the head at refCount 1 and tracks the peak', () => {
    const p = new BlockPool(5);
    expect(p.allocate(3)).toEqual([0, 1, 2]);
    expect([0, 1, 2, 3].map((i) => p.refCount(i))).toEqual([1, 1, 1, 0]);
    expect([p.numFree, p.numUsed, p.peakUsed]).toEqual([2, 3, 3]);
    p.free([1]);
    expect([p.numUsed, p.peakUsed]).toEqual([2, 3]);
    p.resetPeak();
    expect(p.peakUsed).toBe(2);
    expect(p.allocate(0)).toEqual([]);
    p.checkInvariants();
  });

  it('is all-or-nothing: allocate returns null and changes nothing when too few pages are free', () => {
    const p = new BlockPool(4);
    p.allocate(3);
    const before = p.debugString();
    expect(p.allocate(2)).toBeNull();
    expect(p.debugString()).toBe(before);
    expect(p.allocate(1)).toEqual([3]);
    expect(p.allocate(1)).toBeNull();
    p.checkInvariants();
  });

  it('returns freed pages to the tail in the order given (LRU: freed longest ago is reused first)', () => {
    const p = new BlockPool(5);
    p.allocate(3); // 0 1 2
    p.free([2, 0]);
    expect(p.freePages()).toEqual([3, 4, 2, 0]);
    expect(p.allocate(4)).toEqual([3, 4, 2, 0]);
    p.checkInvariants();
  });

  it('keeps a shared page until its last reference is freed', () => {
    const p = new BlockPool(3);
    const [a] = p.allocate(1)!;
    p.incRef([a, a]);
    expect(p.refCount(a)).toBe(3);
    p.free([a]);
    p.free([a]);
    expect([p.refCount(a), p.numFree]).toEqual([1, 2]);
    p.free([a]);
    expect([p.refCount(a), p.numFree]).toEqual([0, 3]);
    expect(p.freePages()).toEqual([1, 2, 0]);
    p.checkInvariants();
  });

  it('rejects double frees, sharing a free page and unknown pages, changing nothing', () => {
    const p = new BlockPool(3);
    p.allocate(2); // 0 1
    const before = p.debugString();
    expect(() => p.free([0, 2])).toThrow(/page 2 has refCount 0 but is freed 1 time\(s\) \(double free\)/);
    expect(() => p.free([1, 1])).toThrow(/page 1 has refCount 1 but is freed 2 time\(s\)/);
    expect(() => p.incRef([0, 2])).toThrow(/page 2 is free; allocate it before sharing it/);
    expect(() => p.free([3])).toThrow(/page 3 is not in 0\.\.2/);
    expect(() => p.refCount(-1)).toThrow(/page -1 is not in 0\.\.2/);
    expect(() => p.allocate(-1)).toThrow(/non-negative integer/);
    expect(p.debugString()).toBe(before);
    p.checkInvariants();
  });

  it('keeps its invariants under random allocate / incRef / free', () => {
    const rand = rng(7);
    const p = new BlockPool(40);
    const held: number[] = []; // one entry per reference we hold
    for (let step = 0; step < 1000; step++) {
      const op = rand();
      if (op < 0.4) {
        const n = Math.floor(rand() * 6);
        const got = p.allocate(n);
        if (got === null) expect(n).toBeGreaterThan(p.numFree);
        else held.push(...got);
      } else if (op < 0.55 && held.length) {
        const page = held[Math.floor(rand() * held.length)];
        p.incRef([page]);
        held.push(page);
      } else if (held.length) {
        const i = Math.floor(rand() * held.length);
        p.free([held[i]]);
        held.splice(i, 1);
      }
      const counts = new Map<number, number>();
      held.forEach((pg) => counts.set(pg, (counts.get(pg) ?? 0) + 1));
      const wrong = [...counts].filter(([pg, c]) => p.refCount(pg) !== c);
      if (wrong.length || p.numUsed !== counts.size) throw new Error(`step ${step}: counts disagree\n${p.debugString()}`);
      p.checkInvariants();
    }
    p.free(held);
    expect(p.numFree).toBe(40);
    expect(p.freePages().slice().sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    p.checkInvariants();
  });

  it('prints its state', () => {
    const p = new BlockPool(4);
    p.allocate(2);
    p.incRef([1]);
    expect(p.debugString()).toBe(['BlockPool pages=4 used=2 free=2 peak=2', '  used: [0×1 1×2]', '  free (head→tail): [2 3]'].join('\n'));
  });
});

describe('BlockPool: cached pages handed out again', () => {
  it('tells every listener at allocation, lists the pages for the step to drain, and unmarks them', () => {
    const pool = new BlockPool(4);
    const a: number[] = [];
    const b: number[] = [];
    pool.addReuseListener((p) => a.push(p));
    const stop = pool.addReuseListener((p) => b.push(p));
    const pages = pool.allocate(4)!;
    pool.setCached(pages[1], true);
    pool.setCached(pages[3], true);
    pool.free(pages);
    expect(pool.isCached(pages[1])).toBe(true); // free pages keep their mark and contents
    pool.reclaim(pages[1]); // a prefix hit revives it: not a reuse
    expect(a).toEqual([]);
    pool.free([pages[1]]);
    const again = pool.allocate(4)!;
    expect(a.sort()).toEqual([pages[1], pages[3]].sort());
    expect([...b].sort()).toEqual(a);
    expect(pool.drainReused().sort()).toEqual(a);
    expect(pool.drainReused()).toEqual([]);
    expect(again.some((p) => pool.isCached(p))).toBe(false);
    expect(pool.numReused).toBe(2);
    stop();
    pool.free(again);
    pool.setCached(again[0], true);
    pool.allocate(4);
    expect(b).toHaveLength(2); // unsubscribed
    expect(a).toHaveLength(3);
  });
});
