/**
 * PrefixCache: full KV pages shared across requests whose prompts start the
 * same (vLLM's automatic prefix caching, SGLang's radix reuse at page
 * granularity), keyed by a PrefixKey (prefix-key.ts): a namespaced hash
 * chain over the pages' token ids and extra keys (image content). Equal keys
 * ⇒ equal K/V, so a new sequence adopts the longest chain of cached pages
 * and starts its prefill after them.
 *
 * It lives inside KVCacheManager (`getComputedPages` / `cacheFullPages`),
 * which is the only caller. Cached pages are either in use (shared,
 * reference counted) or free, in the BlockPool's LRU free list with their
 * contents intact and marked cached; a free page leaves the cache only when
 * the pool hands it out again (a reuse listener). Only full pages are cached
 * and a sequence only ever writes its last, partial page, so shared pages
 * are read-only: no copy on write is needed.
 */
import type { BlockPool } from './block-pool.ts';
import type { SeqId } from './kv-sequence.ts';
import { extendChain, namespaceId, pageContent, type KvNamespace, type PrefixKey, type PrefixSource } from './prefix-key.ts';

export interface PrefixCacheStats {
  lookups: number;
  hitRequests: number;
  hitTokens: number;
  /** Pages lookups found in the GPU pool (hits) and did not (misses: the CPU and stored tiers are asked next, else they are computed). */
  hitPages: number;
  missPages: number;
  cachedPages: number;
  /** Cached pages the pool handed out again (their contents gone). */
  reusedPages: number;
}

export class PrefixCache {
  readonly namespace: string;
  private readonly pageOf = new Map<string, number>();
  private readonly keyOf = new Map<number, string>();
  /** What each cached page's key was hashed from: a hit is confirmed against it, so a hash collision cannot serve wrong K/V. */
  private readonly contentOf = new Map<number, string>();
  /** Per sequence: the keys of its first pages, computed once. */
  private readonly chains = new Map<SeqId, string[]>();
  /** Per sequence: its pages before this index are published (or were adopted from the cache). */
  private readonly published = new Map<SeqId, number>();
  private readonly stats = { lookups: 0, hitRequests: 0, hitTokens: 0, hitPages: 0, missPages: 0, reusedPages: 0 };

  /**
   * `onForget`: told the key and content of a cached page the pool hands out again, before they are dropped (a lower tier keeps them);
   * `onPublish`: told each page newly published, with its index in the chain (a persistent tier writes it through).
   */
  constructor(
    private readonly pool: BlockPool,
    readonly pageSize: number,
    ns: KvNamespace,
    private readonly onForget: ((page: number, key: string, content: string) => void) | null = null,
    private readonly onPublish: ((page: number, key: string, content: string, index: number) => void) | null = null,
  ) {
    this.namespace = namespaceId(ns);
    pool.addReuseListener((page) => this.forget(page));
  }

  // ---------------------------------------------------------------- public API

  /** The cached pages holding the longest known chain of `src`'s first `maxTokens` tokens (not yet referenced). */
  lookup(id: SeqId, src: PrefixSource, maxTokens: number): number[] {
    this.stats.lookups++;
    const n = Math.floor(maxTokens / this.pageSize);
    const chain = this.chain(id, src, n);
    const pages: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = this.pageOf.get(chain[i]);
      if (p === undefined || this.contentOf.get(p) !== pageContent(this.namespace, chain, i, src, this.pageSize)) break;
      pages.push(p);
    }
    this.published.set(id, pages.length);
    this.stats.hitPages += pages.length;
    this.stats.missPages += n - pages.length;
    if (pages.length) {
      this.stats.hitRequests++;
      this.stats.hitTokens += pages.length * this.pageSize;
    }
    return pages;
  }

  /** Publishes the full pages among the first `computedTokens` tokens of the sequence whose block table is `table`. */
  publish(id: SeqId, src: PrefixSource, table: readonly number[], computedTokens: number): void {
    const chain = this.chain(id, src, Math.min(Math.floor(computedTokens / this.pageSize), table.length));
    for (let i = this.published.get(id) ?? 0; i < chain.length; i++) {
      const page = table[i];
      if (this.pageOf.has(chain[i]) || this.keyOf.has(page)) continue; // an equal page is cached already
      this.pageOf.set(chain[i], page);
      this.keyOf.set(page, chain[i]);
      this.contentOf.set(page, pageContent(this.namespace, chain, i, src, this.pageSize));
      this.pool.setCached(page, true);
      this.onPublish?.(page, chain[i], this.contentOf.get(page)!, i);
    }
    this.published.set(id, chain.length);
  }

  /**
   * Registers `page` (freshly filled from a lower tier) as cached page `i`
   * of `id`'s chain, whose key and content were found there; `id`'s pages
   * before i + 1 count as published.
   */
  publishPromoted(id: SeqId, src: PrefixSource, i: number, page: number): void {
    const chain = this.chain(id, src, i + 1);
    this.pageOf.set(chain[i], page);
    this.keyOf.set(page, chain[i]);
    this.contentOf.set(page, pageContent(this.namespace, chain, i, src, this.pageSize));
    this.pool.setCached(page, true);
    this.published.set(id, i + 1);
  }

  /** The key and content string of page `i` of `id`'s chain (what a lower tier stores it under). */
  pageIdentity(id: SeqId, src: PrefixSource, i: number): { key: string; content: string } {
    const chain = this.chain(id, src, i + 1);
    return { key: chain[i], content: pageContent(this.namespace, chain, i, src, this.pageSize) };
  }

  /** Key and content of each of `src`'s first `pages` pages, for a source no sequence holds yet (nothing memoized). */
  identities(src: PrefixSource, pages: number): { key: string; content: string }[] {
    const chain: string[] = [];
    extendChain(this.namespace, chain, pages, src, this.pageSize);
    return chain.map((key, i) => ({ key, content: pageContent(this.namespace, chain, i, src, this.pageSize) }));
  }

  /** Whether the page named `key` is cached here with this content. */
  holds(key: string, content: string): boolean {
    const p = this.pageOf.get(key);
    return p !== undefined && this.contentOf.get(p) === content;
  }

  /** The PrefixKey of a sequence's first `pages` pages. */
  key(id: SeqId, src: PrefixSource, pages: number): PrefixKey {
    return { namespace: this.namespace, chain: this.chain(id, src, pages) };
  }

  /** Forgets a sequence's memoized keys (it finished or was preempted; its pages stay cached). */
  drop(id: SeqId): void {
    this.chains.delete(id);
    this.published.delete(id);
  }

  /** Sequences whose keys are memoized (each is dropped when its sequence is released). */
  get numTracked(): number {
    return this.chains.size;
  }

  get numCachedPages(): number {
    return this.pageOf.size;
  }

  snapshot(): PrefixCacheStats {
    return { ...this.stats, cachedPages: this.pageOf.size };
  }

  /** Throws if the maps and the pool's cached marks disagree. */
  checkInvariants(): void {
    for (const [k, p] of this.pageOf) {
      if (this.keyOf.get(p) !== k) throw new Error(`PrefixCache invariant: page ${p} / key ${k} mismatch`);
      if (!this.pool.isCached(p)) throw new Error(`PrefixCache invariant: page ${p} is cached but the pool does not mark it`);
    }
    if (this.pageOf.size !== this.keyOf.size || this.pageOf.size !== this.contentOf.size) throw new Error('PrefixCache invariant: map sizes differ');
    for (let p = 0; p < this.pool.numPages; p++) {
      if (this.pool.isCached(p) && !this.keyOf.has(p)) throw new Error(`PrefixCache invariant: page ${p} is marked cached but holds no key`);
    }
  }

  // ---------------------------------------------------------------- helpers

  private forget(page: number): void {
    const key = this.keyOf.get(page);
    if (key === undefined) return;
    this.stats.reusedPages++;
    this.onForget?.(page, key, this.contentOf.get(page)!);
    this.keyOf.delete(page);
    this.contentOf.delete(page);
    this.pageOf.delete(key);
  }

  private chain(id: SeqId, src: PrefixSource, pages: number): string[] {
    const chain = this.chains.get(id) ?? [];
    extendChain(this.namespace, chain, pages, src, this.pageSize);
    this.chains.set(id, chain);
    return chain.slice(0, pages);
  }
}
