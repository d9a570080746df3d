/**
 * Downloaded model files kept between page loads (Cache Storage in browsers),
 * checked before use. Each entry is stored with its byte length and SHA-256
 * in headers; a read recomputes both. A cached file that a crash cut short,
 * that the disk damaged, or that an older version stored without a digest is
 * deleted and reported, so the caller downloads it again.
 */
import { sha256Hex } from './download.ts';

/** The part of the Cache API used here (a fake one in Node tests). */
export interface ModelFileCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, res: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
}

const DIGEST = 'x-fastcache-sha256';

/** The browser's cache `name`, or null where there is no Cache Storage (Node, opaque origins, storage off). */
export async function cacheStorage(name: string): Promise<ModelFileCache | null> {
  if (typeof caches === 'undefined') return null;
  try {
    return await caches.open(name);
  } catch {
    return null;
  }
}

/** The cached bytes of `url` when they check out; null when absent, or bad (then deleted, with a warning naming `file`). */
export async function readCached(cache: ModelFileCache, url: string, file: string): Promise<Uint8Array | null> {
  const hit = await cache.match(url).catch(() => undefined);
  if (!hit) return null;
  const checked = await check(hit);
  if (checked instanceof Uint8Array) return checked;
  console.warn(`fastcache: the cached copy of model file "${file}" (${url}) ${checked}: deleted, downloading it again`);
  await cache.delete(url).catch(() => false);
  return null;
}

/** The bytes of a cached response, or why they are not the file it was stored as. */
async function check(res: Response): Promise<Uint8Array | string> {
  const length = res.headers.get('content-length');
  const digest = res.headers.get(DIGEST);
  if (length === null || !/^\d+$/.test(length) || digest === null) return 'has no length or digest (stored by an older version)';
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    return `cannot be read (${(e as Error).message})`;
  }
  if (bytes.length !== Number(length)) return `is ${bytes.length} bytes, not the ${length} it was stored with`;
  const actual = await sha256Hex(bytes);
  return actual === digest ? bytes : `has SHA-256 ${actual}, not the ${digest} it was stored with`;
}

/** Stores a downloaded file with its length and digest (a failure to store only warns: the download stands). */
export async function storeCached(cache: ModelFileCache, url: string, bytes: Uint8Array, sha256: string, type: string): Promise<void> {
  const headers = { 'content-type': type, 'content-length': String(bytes.length), [DIGEST]: sha256 };
  await cache.put(url, new Response(bytes.slice().buffer, { headers })).catch((e: unknown) => {
    console.warn(`fastcache: could not cache ${url}: ${(e as Error).message}`);
  });
}
