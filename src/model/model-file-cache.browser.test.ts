/**
 * The verified model-file cache on the browser's real Cache Storage (headless Chromium): a
 * download is stored with its length and SHA-256 and read back without a fetch; a copy damaged
 * in place (a flipped byte, a body cut short, no digest as an older version stored it) is found
 * on read, deleted, named in a warning and downloaded again; a cache that refuses to store only
 * warns. Each test uses a cache of its own name, deleted afterwards. The network is a fake
 * fetch that counts requests.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cacheStorage, readCached, storeCached, type ModelFileCache } from './model-file-cache.ts';
import { urlSource } from './source.ts';

const BASE = 'https://models.example/tiny/';
const FILE = 'model.safetensors';
const URL_ = BASE + FILE;
const BYTES = Uint8Array.from({ length: 4099 }, (_, i) => (i * 31 + 7) & 255);

let names: string[] = [];
afterEach(async () => {
  for (const n of names) await caches.delete(n);
  names = [];
  vi.restoreAllMocks();
});

async function freshCache(): Promise<ModelFileCache> {
  const name = `fastcache-test-${Math.random().toString(36).slice(2)}`;
  names.push(name);
  const c = await cacheStorage(name);
  if (!c) throw new Error('no Cache Storage in this browser context');
  return c;
}

/** A fetch serving BYTES at URL_ (404 elsewhere), counting the requests. */
function network() {
  const calls: string[] = [];
  const fetch = async (input: RequestInfo | URL): Promise<Response> => {
    const url = String(input instanceof Request ? input.url : input);
    calls.push(url);
    if (url !== URL_) return new Response('missing', { status: 404 });
    return new Response(BYTES.slice(), { headers: { 'content-length': String(BYTES.length), 'content-type': 'application/octet-stream' } });
  };
  return { calls, fetch: fetch as typeof globalThis.fetch };
}

/** What a cached entry holds now: its bytes and headers, as a later read would see them. */
async function entry(cache: ModelFileCache): Promise<{ bytes: Uint8Array; headers: Headers } | null> {
  const r = await cache.match(URL_);
  return r ? { bytes: new Uint8Array(await r.arrayBuffer()), headers: r.headers } : null;
}

describe('model files in Cache Storage, verified before use', () => {
  it('a download is stored with its length and digest and read back exactly, without a fetch', async () => {
    const cache = await freshCache();
    const net = network();
    const src = urlSource(BASE, { cache, fetch: net.fetch });
    expect(await src.readFile(FILE)).toEqual(BYTES);
    const stored = await entry(cache);
    expect(stored!.bytes).toEqual(BYTES);
    expect(stored!.headers.get('content-length')).toBe(String(BYTES.length));
    expect(stored!.headers.get('x-fastcache-sha256')).toMatch(/^[0-9a-f]{64}$/);
    expect(await src.readFile(FILE)).toEqual(BYTES);
    expect(net.calls).toEqual([URL_]); // the second read came from the cache
  });

  it.each<[string, (bytes: Uint8Array, digest: string) => { body: Uint8Array; headers: Record<string, string> }, RegExp]>([
    ['a flipped byte', (b, d) => ({ body: flip(b), headers: { 'content-length': String(b.length), 'x-fastcache-sha256': d } }), /has SHA-256 [0-9a-f]{64}, not the [0-9a-f]{64} it was stored with/],
    ['a body cut short', (b, d) => ({ body: b.slice(0, 1000), headers: { 'content-length': String(b.length), 'x-fastcache-sha256': d } }), /is 1000 bytes, not the 4099 it was stored with/],
    ['no digest (stored by an older version)', (b) => ({ body: b, headers: { 'content-length': String(b.length) } }), /has no length or digest/],
  ])('a cached copy with %s is deleted, named, downloaded again and stored right', async (_, damage, why) => {
    const cache = await freshCache();
    const net = network();
    const src = urlSource(BASE, { cache, fetch: net.fetch });
    await src.readFile(FILE);
    const digest = (await entry(cache))!.headers.get('x-fastcache-sha256')!;
    const bad = damage(BYTES, digest);
    await cache.put(URL_, new Response(bad.body.slice().buffer, { headers: bad.headers }));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});

    expect(await readCached(cache, URL_, FILE)).toBeNull();
    expect(await cache.match(URL_)).toBeUndefined(); // deleted: never read again
    expect(warn.mock.calls.map((c) => String(c[0])).join('\n')).toMatch(new RegExp(`model file "${FILE}".*${why.source}`));

    await cache.put(URL_, new Response(bad.body.slice().buffer, { headers: bad.headers }));
    expect(await src.readFile(FILE)).toEqual(BYTES); // through the source: refetched
    expect(net.calls).toEqual([URL_, URL_]);
    expect((await entry(cache))!.bytes).toEqual(BYTES);
    expect((await entry(cache))!.headers.get('x-fastcache-sha256')).toBe(digest);
  });

  it('a cache that refuses to store only warns: the download stands, and the next read downloads again', async () => {
    const real = await freshCache();
    const refusing: ModelFileCache = { match: (u) => real.match(u), delete: (u) => real.delete(u), put: () => Promise.reject(new DOMException('quota exceeded', 'QuotaExceededError')) };
    const net = network();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const src = urlSource(BASE, { cache: refusing, fetch: net.fetch });
    expect(await src.readFile(FILE)).toEqual(BYTES);
    expect(warn.mock.calls.map((c) => String(c[0])).join('\n')).toMatch(/could not cache .*quota exceeded/);
    expect(await real.match(URL_)).toBeUndefined();
    expect(await src.readFile(FILE)).toEqual(BYTES);
    expect(net.calls).toEqual([URL_, URL_]);
  });

  it('storeCached and readCached round-trip through the real Cache API', async () => {
    const cache = await freshCache();
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', BYTES)), (b) => b.toString(16).padStart(2, '0')).join('');
    await storeCached(cache, URL_, BYTES, digest, 'application/octet-stream');
    expect(await readCached(cache, URL_, FILE)).toEqual(BYTES);
  });
});

function flip(b: Uint8Array): Uint8Array {
  const c = b.slice();
  c[c.length >> 1] ^= 0x40;
  return c;
}
