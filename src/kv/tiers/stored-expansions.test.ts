/** Stored image expansions on the memory backend: round trips across sessions, and any damaged record deleted, never used. */
import { describe, expect, it } from 'vitest';
import { StoredExpansions } from './stored-expansions.ts';
import { memoryBackend, memoryStore } from './store-backend.ts';

let n = 0;
const fresh = () => `exp-${++n}`;
const ids = [5, 9, 9, 9, 9, 7];

describe('StoredExpansions', () => {
  it('gives back what it kept, in a new session of the same namespace only', async () => {
    const name = fresh();
    const a = await StoredExpansions.open(memoryBackend(name), 'ns1');
    a.put('img', ids);
    await a.flush();
    expect(await (await StoredExpansions.open(memoryBackend(name), 'ns1')).get('img')).toEqual(ids);
    expect(await (await StoredExpansions.open(memoryBackend(name), 'ns2')).get('img')).toBeNull(); // another model's
    expect(await (await StoredExpansions.open(memoryBackend(name), 'ns1')).get('other')).toBeNull();
  });

  it.each([
    ['a changed id', (r: Record<string, unknown>) => { (r.ids as number[])[0] = 6; }],
    ['a record moved under another key', (r: Record<string, unknown>) => { r.key = 'img2'; }],
    ['a record of another namespace under this one', (r: Record<string, unknown>) => { r.ns = 'ns9'; }],
  ])('%s: detected, deleted, a miss', async (_what, damage) => {
    const name = fresh();
    const a = await StoredExpansions.open(memoryBackend(name), 'ns1');
    a.put('img', ids);
    await a.flush();
    const store = memoryStore(name).manifests;
    const [k, r] = [...store][0];
    damage(r as Record<string, unknown>);
    if ((r as { key: string }).key === 'img2') { store.delete(k); store.set('ns1/img2', r); }
    const b = await StoredExpansions.open(memoryBackend(name), 'ns1');
    const key = (r as { key: string }).key;
    expect(await b.get(key)).toBeNull();
    await b.flush();
    expect(b.stats().records).toBe(0);
  });

  it('a record this session put is read back at once, before its write has landed', async () => {
    const a = await StoredExpansions.open(memoryBackend(fresh()), 'ns1');
    a.put('img', ids);
    expect(await a.get('img')).toEqual(ids);
    expect(a.stats().verifyFailures).toBe(0);
  });

  it('collects malformed records at open, and clear() empties this namespace', async () => {
    const name = fresh();
    memoryStore(name).manifests.set('junk', { v: 1, ids: 'no' });
    const a = await StoredExpansions.open(memoryBackend(name), 'ns1');
    expect(memoryStore(name).manifests.has('junk')).toBe(false);
    a.put('img', ids);
    await a.flush();
    await a.clear();
    expect(memoryStore(name).manifests.size).toBe(0);
    expect(await (await StoredExpansions.open(memoryBackend(name), 'ns1')).get('img')).toBeNull();
  });
});
