import { describe, expect, it } from 'vitest';
import { hash53 } from '../prefix-key.ts';
import { CpuTier } from './cpu-tier.ts';

const page = (content: string, bytes = 100) => ({ key: hash53(content), content, data: new ArrayBuffer(bytes) });

describe('CpuTier', () => {
  it('keeps pages within its byte budget, least recently used out first', () => {
    const t = new CpuTier(300);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((s) => page(s));
    for (const p of [a, b, c]) expect(t.put(p.key, p.content, p.data)).toBe(true);
    expect(t.get(a.key, a.content)).toBe(a.data); // a is now the most recent
    t.put(d.key, d.content, d.data); // over budget: b (the oldest) goes
    expect([t.has(a.key), t.has(b.key), t.has(c.key), t.has(d.key)]).toEqual([true, false, true, true]);
    expect(t.snapshot()).toMatchObject({ bytes: 300, pages: 3, stored: 4, hits: 1, evicted: 1 });
    t.checkInvariants();
  });

  it('confirms a hit against the content: a key collision is a miss', () => {
    const t = new CpuTier(1000);
    const a = page('a');
    t.put(a.key, a.content, a.data);
    expect(t.get(a.key, 'not a')).toBeNull();
    expect(t.snapshot().misses).toBe(1);
  });

  it('a page larger than the budget, or a budget of 0, stores nothing', () => {
    expect(new CpuTier(50).put('k', 'c', new ArrayBuffer(51))).toBe(false);
    const off = new CpuTier(0);
    expect(off.put('k', 'c', new ArrayBuffer(1))).toBe(false);
    expect(off.snapshot()).toMatchObject({ bytes: 0, pages: 0 });
  });

  it('replacing a key keeps the byte count right', () => {
    const t = new CpuTier(1000);
    t.put(hash53('a'), 'a', new ArrayBuffer(100));
    t.put(hash53('a'), 'a', new ArrayBuffer(300));
    expect(t.bytes).toBe(300);
    t.delete(hash53('a'));
    expect(t.bytes).toBe(0);
    t.checkInvariants();
  });

  it.each([-1, 1.5, Number.NaN, '64' as unknown as number])('refuses the budget %s, naming the option', (b) => {
    expect(() => new CpuTier(b)).toThrow(/cpuCacheBytes must be a non-negative integer/);
  });
});

describe('CpuTier: room reserved for swapped-out sequences', () => {
  it('reserving evicts cache entries; a reservation larger than the free budget is refused; put respects it', () => {
    const t = new CpuTier(300);
    for (const s of ['a', 'b', 'c']) t.put(hash53(s), s, new ArrayBuffer(100));
    expect(t.reserve(150)).toBe(true); // a and b make way
    expect([t.has(hash53('a')), t.has(hash53('b')), t.has(hash53('c'))]).toEqual([false, false, true]);
    expect(t.reserve(200)).toBe(false);
    expect(t.put(hash53('d'), 'd', new ArrayBuffer(200))).toBe(false);
    expect(t.put(hash53('d'), 'd', new ArrayBuffer(100))).toBe(true); // c makes way
    expect(t.snapshot()).toMatchObject({ bytes: 100, reservedBytes: 150 });
    t.checkInvariants();
    t.unreserve(150);
    expect(() => t.unreserve(1)).toThrow(/only 0 are reserved/);
  });
});
