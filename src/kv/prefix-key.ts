/**
 * PrefixKey: what names the KV of a prompt prefix, page by page, so that
 * equal keys mean equal K/V — within one tab today, across tabs and reloads
 * once keys outlive the pool (CPU tier, IndexedDB).
 *
 *   namespace  = H(model id, model hash (config + weights), KV dtype, page size, format version)
 *   page 0 key = H(namespace, token ids of page 0, extra keys of page 0)
 *   page i key = H(key of page i-1, token ids of page i, extra keys of page i)
 *
 * Extra keys name what token ids do not: the content hash of the image whose
 * features fill image-token positions, with the feature offset. Only the
 * namespace decides whether a stored page can be used at all: another model,
 * dtype or page size can never hit.
 */

/** The KV format version: bump it when a page's bytes or their meaning change. */
export const KV_FORMAT_VERSION = 1;

export interface KvNamespace {
  /** Model id (repo id, folder or URL). */
  modelId: string;
  /** Hash of the model's config and weights (see src/model/fingerprint.ts). */
  modelHash: string;
  kvDtype: 'f32' | 'f16';
  pageSize: number;
  formatVersion: number;
}

/** What a key is computed from: a sequence's token ids and the extra keys of its tokens. */
export interface PrefixSource {
  /** Token ids [start, start+count). */
  tokens(start: number, count: number): number[];
  /** Extra key of the tokens [start, start+count) (e.g. image hashes), '' when none. */
  extraKey(start: number, count: number): string;
}

/** The keys of a sequence's first pages, under one namespace. */
export interface PrefixKey {
  readonly namespace: string;
  /** chain[i]: the key of page i. */
  readonly chain: readonly string[];
}

/** The namespace as one stable string (also the parent of page 0). */
export function namespaceId(ns: KvNamespace): string {
  if (!Number.isInteger(ns.pageSize) || ns.pageSize <= 0) throw new RangeError(`KvNamespace: pageSize must be a positive integer, got ${ns.pageSize}`);
  return hash53(JSON.stringify([ns.modelId, ns.modelHash, ns.kvDtype, ns.pageSize, ns.formatVersion]));
}

/** What page `i`'s key is hashed from (also stored, so a hit is confirmed and a collision cannot serve wrong K/V). */
export function pageContent(namespace: string, chain: readonly string[], i: number, src: PrefixSource, pageSize: number): string {
  const parent = i === 0 ? namespace : chain[i - 1];
  return `${parent}|${src.tokens(i * pageSize, pageSize).join(',')}|${src.extraKey(i * pageSize, pageSize)}`;
}

/** Extends `chain` (in place) to the keys of the first `pages` pages of `src`. */
export function extendChain(namespace: string, chain: string[], pages: number, src: PrefixSource, pageSize: number): void {
  for (let i = chain.length; i < pages; i++) chain.push(hash53(pageContent(namespace, chain, i, src, pageSize)));
}

/** cyrb53: a fast 53-bit string hash, as a base-36 string. Collisions among a few thousand pages are ~1e-10 likely (and confirmed against the content anyway). */
export function hash53(s: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
