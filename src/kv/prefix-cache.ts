/**
 * PrefixCache: full KV pages shared across requests whose prompts start the
 * same (vLLM's automatic prefix caching, SGLang's radix reuse at page
 * granularity). A page is keyed by a hash chain:
 *
 *   key(page i) = H(key(page i-1), token ids of page i, extra keys of page i)
 *
 * where the extra keys name what the ids do not: the content of the images
 * whose features fill image-token positions in the page. Equal keys ⇒ equal
 * K/V, so a new request adopts the longest chain of cached pages and starts
 * its prefill after them.
 *
 * Cached pages are either in use (shared, reference counted) or free, in the
 * BlockPool's LRU free list with their contents intact; a free page leaves
 * the cache only when the pool hands it out again (BlockPool.onReuse). Only
 * full pages are cached and a sequence only ever writes its last, partial
 * page, so shared pages are read-only: no copy on write is needed. Requests
 * whose KV a press rewrites in place (compression ratio > 0) neither adopt
 * nor publish pages.
 */
import type { BlockPool } from './block-pool.ts';
import type { KVCacheManager, SeqId } from './kv-cache-manager.ts';

export interface PrefixCacheStats {
  lookups: number;
  hitRequests: number;
  hitTokens: number;
  cachedPages: number;
}

/** What the cache needs to know of a sequence. */
export interface PrefixSource {
  id: SeqId;
  /** Token ids [start, start+count). */
  tokens(start: number, count: number): number[];
  /** Extra key of the tokens [start, start+count) (e.g. image hashes), '' when none. */
  extraKey(start: number, count: number): string;
}

export class PrefixCache {
  private readonly pageOf = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  /** What each cached page's key was hashed from: a hit is confirmed against it, so a hash collision cannot serve wrong K/V. */
  private readonly contentOf = new Map<number, string>();
  /** Per sequence: the keys of its first pages, computed once. */
  private readonly chains = new Map<SeqId, string[]>();
  /** Per sequence: its pages before this index are published (or were adopted from the cache). */
  private readonly published = new Map<SeqId, number>();
  readonly stats: Omit<PrefixCacheStats, 'cachedPages'> = { lookups: 0, hitRequests: 0, hitTokens: 0 };

  constructor(
    private readonly pool: BlockPool,
    private readonly kv: KVCacheManager,
  ) {
    pool.onReuse = (page) => this.forget(page);
  }

  get pageSize(): number {
    return this.kv.pageSize;
  }

  /**
   * Starts `seq` (which holds no pages yet) on the longest cached chain of
   * its first `maxTokens` tokens. Returns the number of tokens whose KV it now has.
   */
  attach(seq: PrefixSource, maxTokens: number): number {
    this.stats.lookups++;
    const n = Math.floor(maxTokens / this.pageSize);
    const chain = this.chain(seq, n);
    const pages: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = this.pageOf.get(chain[i]);
      if (p === undefined || this.contentOf.get(p) !== this.content(seq, chain, i)) break;
      pages.push(p);
    }
    this.published.set(seq.id, pages.length);
    if (pages.length === 0) return 0;
    for (const p of pages) this.pool.reclaim(p);
    this.kv.adopt(seq.id, pages);
    const tokens = pages.length * this.pageSize;
    this.stats.hitRequests++;
    this.stats.hitTokens += tokens;
    return tokens;
  }

  /** Publishes the full pages among `seq`'s first `computedTokens` tokens. */
  publish(seq: PrefixSource, computedTokens: number): void {
    const table = this.kv.blockTable(seq.id);
    const chain = this.chain(seq, Math.min(Math.floor(computedTokens / this.pageSize), table.length));
    for (let i = this.published.get(seq.id) ?? 0; i < chain.length; i++) {
      const page = table[i];
      if (this.pageOf.has(chain[i]) || this.keyOf.has(page)) continue; // an equal page is cached already
      this.pageOf.set(chain[i], page);
      this.keyOf.set(page, chain[i]);
      this.contentOf.set(page, this.content(seq, chain, i));
    }
    this.published.set(seq.id, chain.length);
  }

  /** Forgets a sequence's memoized keys (it finished; its pages stay cached). */
  drop(id: SeqId): void {
    this.chains.delete(id);
    this.published.delete(id);
  }

  get numCachedPages(): number {
    return this.pageOf.size;
  }

  snapshot(): PrefixCacheStats {
    return { ...this.stats, cachedPages: this.pageOf.size };
  }

  /** Throws if the two maps disagree. */
  checkInvariants(): void {
    for (const [k, p] of this.pageOf) if (this.keyOf.get(p) !== k) throw new Error(`PrefixCache invariant: page ${p} / key ${k} mismatch`);
    if (this.pageOf.size !== this.keyOf.size) throw new Error('PrefixCache invariant: map sizes differ');
  }

  private forget(page: number): void {
    const key = this.keyOf.get(page);
    if (key === undefined) return;
    this.keyOf.delete(page);
    this.contentOf.delete(page);
    this.pageOf.delete(key);
  }

  private content(seq: PrefixSource, chain: readonly string[], i: number): string {
    const P = this.pageSize;
    return `${i === 0 ? '' : chain[i - 1]}|${seq.tokens(i * P, P).join(',')}|${seq.extraKey(i * P, P)}`;
  }

  /** Keys of the first `pages` pages of `seq`. */
  private chain(seq: PrefixSource, pages: number): string[] {
    const chain = this.chains.get(seq.id) ?? [];
    for (let i = chain.length; i < pages; i++) chain.push(hash53(this.content(seq, chain, i)));
    this.chains.set(seq.id, chain);
    return chain.slice(0, pages);
  }
}

/** cyrb53: a fast 53-bit string hash, as a base-36 string. Collisions among a few thousand pages are ~1e-10 likely. */
function hash53(s: string): string {
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
