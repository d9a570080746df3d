import { describe, expect, it } from 'vitest';
import { rng } from '../../test/gpu.ts';
import { KVCacheManager } from './kv-cache-manager.ts';
import { packAttentionBatch } from './attention-batch.ts';

/** Every page in at most one table, refCount 1 for pages in tables, the rest free. */
function expectExclusive(kv: KVCacheManager): void {
  kv.checkInvariants();
  const seen = new Set<number>();
  for (const id of kv.sequenceIds()) {
    for (const p of kv.blockTable(id)) {
      expect(seen.has(p)).toBe(false);
      seen.add(p);
      expect(kv.pool.refCount(p)).toBe(1);
    }
  }
  expect(kv.pool.numUsed).toBe(seen.size);
}

describe('KVCacheManager', () => {
  it('grows a sequence a page at a time and maps tokens to slots', () => {
    const kv = KVCacheManager.simulated(8, 4);
    expect(kv.allocateSlots('a', 3)).toBe(true);
    expect([kv.numTokens('a'), kv.blockTable('a').length]).toEqual([3, 1]);
    expect(kv.allocateSlots('a', 1)).toBe(true); // fills page 0
    expect(kv.blockTable('a').length).toBe(1);
    expect(kv.allocateSlots('b', 2)).toBe(true); // interleave: b takes the next page
    expect(kv.allocateSlots('a', 6)).toBe(true); // 10 tokens → 3 pages
    const table = kv.blockTable('a');
    expect(table).toEqual([0, 2, 3]);
    expect(kv.blockTable('b')).toEqual([1]);
    expect(Array.from(kv.slotsFor('a', 2, 6))).toEqual([2, 3, 8, 9, 10, 11]); // page 2 → slots 8..11
    expect(Array.from(kv.slotsFor('a', 8, 2))).toEqual([12, 13]);
    expect(Array.from(kv.slotsFor('b', 0, 2))).toEqual([4, 5]);
    expect(kv.allocateSlots('a', 0)).toBe(true);
    expectExclusive(kv);
  });

  it('is all-or-nothing: allocateSlots returns false and changes nothing when the pool is short', () => {
    const kv = KVCacheManager.simulated(3, 4);
    expect(kv.allocateSlots(1, 8)).toBe(true);
    const before = kv.debugString();
    expect(kv.canFit(8)).toBe(false);
    expect(kv.allocateSlots(2, 8)).toBe(false);
    expect(kv.has(2)).toBe(false); // not even created
    expect(kv.canFit(5, 1)).toBe(false);
    expect(kv.allocateSlots(1, 5)).toBe(false); // needs 2 more pages, 1 free
    expect(kv.debugString()).toBe(before);
    expect(kv.numTokens(1)).toBe(8);
    expect(kv.canFit(4)).toBe(true);
    expect(kv.canFit(4, 1)).toBe(true);
    expect(kv.allocateSlots(1, 4)).toBe(true);
    expect(kv.canFit(1)).toBe(false);
    expect(kv.numFreePages).toBe(0);
    expectExclusive(kv);
  });

  it('frees every page of a sequence, last page first', () => {
    const kv = KVCacheManager.simulated(6, 2);
    kv.allocateSlots('x', 5); // pages 0 1 2
    kv.allocateSlots('y', 1); // page 3
    kv.free('x');
    expect(kv.has('x')).toBe(false);
    expect(kv.pool.freePages()).toEqual([4, 5, 2, 1, 0]);
    kv.free('y');
    expect(kv.pool.numFree).toBe(6);
    expectExclusive(kv);
  });

  it('throws clear errors for unknown sequence ids and unallocated tokens', () => {
    const kv = KVCacheManager.simulated(4, 4);
    kv.allocateSlots('s', 5);
    expect(() => kv.blockTable('nope')).toThrow(/KVCacheManager.blockTable: unknown sequence id "nope"/);
    expect(() => kv.numTokens(7)).toThrow(/unknown sequence id 7/);
    expect(() => kv.slotsFor('nope', 0, 1)).toThrow(/unknown sequence id/);
    expect(() => kv.free('nope')).toThrow(/KVCacheManager.free: unknown sequence id/);
    expect(() => kv.canFit(1, 'nope')).toThrow(/unknown sequence id/);
    expect(() => kv.slotsFor('s', 3, 3)).toThrow(/tokens \[3, 6\) of sequence s are not allocated \(it has 5\)/);
    expect(() => kv.allocateSlots('s', -1)).toThrow(/non-negative integer/);
    expect(() => KVCacheManager.simulated(4, 0)).toThrow(/pageSize must be a positive integer/);
  });

  it('never puts a page in two tables and gets every page back (random workload)', () => {
    const rand = rng(3);
    const kv = KVCacheManager.simulated(50, 16);
    let nextId = 0;
    for (let step = 0; step < 400; step++) {
      const ids = kv.sequenceIds();
      const op = rand();
      if (op < 0.25 || ids.length === 0) {
        const n = 1 + Math.floor(rand() * 100);
        const fits = kv.canFit(n);
        expect(kv.allocateSlots(nextId++, n)).toBe(fits);
      } else if (op < 0.85) {
        const id = ids[Math.floor(rand() * ids.length)];
        const n = 1 + Math.floor(rand() * 20);
        const fits = kv.canFit(n, id);
        const before = kv.numTokens(id);
        expect(kv.allocateSlots(id, n)).toBe(fits);
        expect(kv.numTokens(id)).toBe(fits ? before + n : before);
      } else {
        kv.free(ids[Math.floor(rand() * ids.length)]);
      }
      expectExclusive(kv);
    }
    for (const id of kv.sequenceIds()) kv.free(id);
    expect(kv.pool.numFree).toBe(50);
    expect(kv.numSequences).toBe(0);
    kv.pool.checkInvariants();
  });

  it('prints its tables', () => {
    const kv = KVCacheManager.simulated(4, 4);
    kv.allocateSlots('a', 6);
    expect(kv.debugString()).toBe(['KVCacheManager pageSize=4 sequences=1 pages used=2/4', '  a: 6 tokens, pages [0 1] (last page 2/4)'].join('\n'));
  });
});

describe('packAttentionBatch', () => {
  it('concatenates each sequence table once and gives rows their table offset, position and slot', () => {
    const kv = KVCacheManager.simulated(8, 2);
    kv.allocateSlots('A', 3); // pages 0 1
    kv.allocateSlots('B', 8); // pages 2 3 4 5
    const b = packAttentionBatch(kv, [
      { seqId: 'A', start: 0, count: 3 },
      { seqId: 'B', start: 7, count: 1 },
      { seqId: 'A', start: 2, count: 1 },
    ]);
    expect(b.nq).toBe(5);
    expect(Array.from(b.blockTables)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(Array.from(b.rowInfo)).toEqual([0, 0, 0, 1, 0, 2, 2, 7, 0, 2]);
    expect(Array.from(b.slots)).toEqual([0, 1, 2, 11, 2]);
    expect(Array.from(packAttentionBatch(kv, []).blockTables)).toEqual([0]); // never an empty binding
  });
});

describe('KVCacheManager.compact', () => {
  it('frees trailing pages, keeps the front ones and their order, records the offset, and keeps invariants', () => {
    const kv = KVCacheManager.simulated(10, 4);
    expect(kv.allocateSlots('a', 17)).toBe(true); // 5 pages
    const before = [...kv.blockTable('a')];
    expect(kv.compact('a', 6)).toBe(3);
    expect(kv.blockTable('a')).toEqual(before.slice(0, 2));
    expect(kv.numTokens('a')).toBe(6);
    expect(kv.sequence('a')).toMatchObject({ numSlots: 6, positionOffset: 11, compressed: true });
    expect(kv.numFreePages).toBe(8);
    kv.checkInvariants();
    expect(kv.allocateSlots('a', 3)).toBe(true); // 9 tokens: 3 pages
    expect(kv.blockTable('a').length).toBe(3);
    expect(() => kv.compact('a', 10)).toThrow(/holds 9 tokens/);
    expect(kv.compact('a', 9)).toBe(0);
    expect(kv.positionOffset('a')).toBe(11);
    kv.free('a');
    expect(kv.numFreePages).toBe(10);
  });
});
