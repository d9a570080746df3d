import { BlockPool } from './block-pool.ts';
import { describeSequences, emptySequence, type KvSequence, type SeqId } from './kv-sequence.ts';
import { PrefixCache, type PrefixCacheStats } from './prefix-cache.ts';
import { PrefixTails, tailAfter } from './prefix-tails.ts';
import { SwapSpace } from './swap-space.ts';
import { hash53, KV_FORMAT_VERSION, type KvNamespace, type PrefixKey, type PrefixSource } from './prefix-key.ts';
import type { CpuTier } from './tiers/cpu-tier.ts';
import type { PagePersister, StoredPageId } from './tiers/persistent-tier.ts';
import { TransferQueue, type PendingDownload, type PendingUpload } from './tiers/transfer-queue.ts';

export type { SeqId };

/**
 * KVCacheManager: the KvSequence (block table, slot count, position offset,
 * compressed flag) of every live sequence, and the prefix cache. It asks the
 * BlockPool for pages and gives them back; it does not know about GPU
 * buffers (KvPool) nor about policy (the scheduler decides who runs, and
 * preempts when `allocateSlots` says no).
 *
 * Token/page layout of one sequence, pageSize = 4, 10 tokens:
 *
 *   token index     0  1  2  3 | 4  5  6  7 | 8  9  .  .
 *   block table    [    p5     |     p1     |    p12    ]   (any page ids, any order)
 *   page offset     0  1  2  3 | 0  1  2  3 | 0  1  2  3
 *   slot            20 21 22 23  4  5  6  7  48 49            slot = page*pageSize + offset
 *                                                 └──┘ free room in the last page
 *
 *   allocateSlots(seq, 3):  tokens 10..12 → slots 50 51 (p12) + one new page pN: pN*4+0
 *
 * Token t of a sequence lives in page table[floor(t / pageSize)] at offset
 * t % pageSize. Only the last page is partly filled. Kernels address K/V
 * through the slot (kv_write) or through the table itself (paged attention).
 */

export class KVCacheManager {
  private readonly seqs = new Map<SeqId, KvSequence>();
  private readonly cpu: CpuTier | null;
  private readonly prefix: PrefixCache | null;
  /** Page copies the next step owes the CPU tier (see TransferQueue). */
  private readonly transfers = new TransferQueue();
  private promotedPages = 0;
  /** Pages the last getComputedPages / adoptCompressed found on the GPU and brought up from the CPU tier. */
  private last = { gpu: 0, cpu: 0 };
  /** Sequences swapped out to the CPU tier, waiting to be swapped back in (null without a CPU tier). */
  private readonly swapped: SwapSpace | null;
  /** The partly filled pages where reusable prefixes end (null without a prefix cache and a CPU tier). */
  private readonly tails: PrefixTails | null;

  /**
   * `prefixCache`: the namespace its keys live in (model, dtype, page size), or null for no prefix cache.
   * `cpu`: the tier cached pages move to when the pool needs them back, and come back from on a hit
   * (and where preempted sequences are swapped out), with the bytes of one page over every layer.
   */
  constructor(
    readonly pool: BlockPool,
    readonly pageSize: number,
    prefixCache: KvNamespace | null = null,
    cpuTier: { tier: CpuTier; pageBytes: number } | null = null,
    private readonly persist: PagePersister | null = null,
  ) {
    const cpu = cpuTier?.tier ?? null;
    if (persist && !cpu) throw new RangeError('KVCacheManager: a persistent tier stages its pages in the CPU tier: give one (cpuCacheBytes > 0)');
    this.cpu = cpu;
    this.swapped = cpuTier ? new SwapSpace(cpuTier.tier, cpuTier.pageBytes, this.transfers) : null;
    if (!Number.isInteger(pageSize) || pageSize <= 0) throw new RangeError(`KVCacheManager: pageSize must be a positive integer, got ${pageSize}`);
    if (prefixCache && prefixCache.pageSize !== pageSize) throw new RangeError(`KVCacheManager: the prefix namespace's pageSize ${prefixCache.pageSize} differs from ${pageSize}`);
    const demote = cpu ? (page: number, key: string, content: string) => this.transfers.download(page, (data) => cpu.put(key, content, data)) : null;
    const writeThrough = persist
      ? (page: number, key: string, content: string, index: number) => {
          if (!persist.has(key)) this.transfers.download(page, (data) => persist.put({ key, content, index }, data));
        }
      : null;
    this.prefix = prefixCache ? new PrefixCache(pool, pageSize, prefixCache, demote, writeThrough) : null;
    this.tails = this.prefix && cpu ? new PrefixTails(this.prefix, cpu, this.transfers, pool, persist) : null;
  }

  /** A manager over a fresh pool of `numPages` pages: no GPU needed (tests, planning); `prefixCache` turns on a cache in a test namespace. */
  static simulated(numPages: number, pageSize = 16, prefixCache = false, cpuTier: { tier: CpuTier; pageBytes: number } | null = null): KVCacheManager {
    const ns: KvNamespace = { modelId: 'simulated', modelHash: '0', kvDtype: 'f32', pageSize, formatVersion: KV_FORMAT_VERSION };
    return new KVCacheManager(new BlockPool(numPages), pageSize, prefixCache ? ns : null, cpuTier);
  }

  // ---------------------------------------------------------------- public API

  /**
   * Makes room for `numNewTokens` more tokens of `seqId` (creating the
   * sequence if it is new): pages are taken from the pool only when the last
   * page is full.
   *
   * Args:
   *   seqId: the sequence; unknown ids start empty.
   *   numNewTokens: tokens to append (their slots: `slotsFor(seqId, numTokens before, numNewTokens)`).
   * Returns false — and changes nothing, not even creating the sequence —
   * when the pool has too few free pages; the scheduler then preempts.
   */
  allocateSlots(seqId: SeqId, numNewTokens: number): boolean {
    if (!Number.isInteger(numNewTokens) || numNewTokens < 0) throw new RangeError(`KVCacheManager.allocateSlots: numNewTokens must be a non-negative integer, got ${numNewTokens}`);
    const seq = this.seqs.get(seqId) ?? emptySequence();
    const needed = this.pagesFor(seq.numSlots + numNewTokens) - seq.pages.length;
    const pages = this.pool.allocate(Math.max(0, needed));
    if (!pages) return false;
    seq.pages.push(...pages);
    seq.numSlots += numNewTokens;
    this.seqs.set(seqId, seq);
    return true;
  }

  /**
   * Starts `seqId` (which must not exist) on the cached pages of the longest
   * known prefix of its first `maxTokens` tokens (vLLM's get_computed_blocks):
   * they are shared read-only, or revived from the free list. Returns the
   * tokens whose KV it now has (a multiple of pageSize; 0 without a prefix cache).
   */
  getComputedPages(seqId: SeqId, src: PrefixSource, maxTokens: number): number {
    if (this.seqs.has(seqId)) throw new Error(`KVCacheManager.getComputedPages: sequence ${JSON.stringify(seqId)} already holds pages`);
    if (!this.prefix) return 0;
    const pages = this.prefix.lookup(seqId, src, maxTokens);
    for (const p of pages) this.pool.reclaim(p); // before promote() allocates: a hit must not be handed out again
    const gpu = pages.length;
    pages.push(...this.promote(seqId, src, Math.floor(maxTokens / this.pageSize), pages.length));
    this.last = { gpu, cpu: pages.length - gpu };
    if (pages.length === 0) return 0;
    this.seqs.set(seqId, { ...emptySequence(), pages, numSlots: pages.length * this.pageSize });
    return pages.length * this.pageSize;
  }

  /**
   * Publishes the full pages among the sequence's first `computedTokens`
   * tokens to the prefix cache (vLLM's cache_full_blocks). A sequence whose
   * pages a press rewrote is never published.
   */
  cacheFullPages(seqId: SeqId, src: PrefixSource, computedTokens: number): void {
    const seq = this.get(seqId, 'cacheFullPages');
    if (!this.prefix || seq.compressed) return;
    this.prefix.publish(seqId, src, seq.pages, Math.min(computedTokens, seq.numSlots));
  }

  /**
   * The pages of `src`'s first `maxTokens` tokens after the longest run
   * already here (GPU prefix cache, then CPU tier): what a persistent tier
   * may hold. Empty without a persistent tier.
   */
  restorable(src: PrefixSource, maxTokens: number): StoredPageId[] {
    if (!this.persist) return [];
    const { ids, held } = this.heldPrefix(src, maxTokens);
    return ids.slice(held).map((p, i) => ({ ...p, index: held + i }));
  }

  /**
   * Leading tokens of `src`'s first `maxTokens` whose pages the GPU prefix
   * cache or the CPU tier holds now (0 without a prefix cache) — up to the
   * tail of `tailEnds` in the page after them, when that tail is held.
   */
  cachedPrefixTokens(src: PrefixSource, maxTokens: number, tailEnds: readonly number[] = []): number {
    const held = this.heldPrefix(src, maxTokens).held * this.pageSize;
    const end = tailAfter(tailEnds, held, this.pageSize, maxTokens);
    return end !== undefined && this.tails?.holds(src, end) ? end : held;
  }

  // ---------------------------------------------------------------- prefix tails (prefix-tails.ts)

  /** Saves the partly filled page where a reusable prefix of `end` tokens ends, from a sequence that has computed past it. */
  saveTail(seqId: SeqId, src: PrefixSource, end: number): void {
    this.tails?.save(this.get(seqId, 'saveTail'), src, end);
  }

  /** Extends a sequence (new, or holding the full pages before `end`) with a copy of the tail at `end`; whether it did. */
  adoptTail(seqId: SeqId, src: PrefixSource, end: number): boolean {
    const seq = this.seqs.get(seqId) ?? emptySequence();
    if (!this.tails?.adopt(seq, src, end)) return false;
    this.seqs.set(seqId, seq);
    return true;
  }

  /** The tail at `end` as a persistent tier names it, when this tier lacks it (empty without a persistent tier). */
  restorableTail(src: PrefixSource, end: number): StoredPageId[] {
    const id = this.persist && this.tails ? this.tails.id(src, end) : null;
    return id && !this.cpu!.has(id.key, id.content) ? [id] : [];
  }

  private heldPrefix(src: PrefixSource, maxTokens: number): { ids: { key: string; content: string }[]; held: number } {
    if (!this.prefix) return { ids: [], held: 0 };
    const ids = this.prefix.identities(src, Math.floor(maxTokens / this.pageSize));
    const first = ids.findIndex((p) => !this.prefix!.holds(p.key, p.content) && !this.cpu?.has(p.key, p.content));
    return { ids, held: first < 0 ? ids.length : first };
  }

  /** Stages a page read back from the persistent tier in the CPU tier, where the next lookup finds it. */
  stage(id: StoredPageId, data: ArrayBuffer): boolean {
    return this.cpu?.put(id.key, id.content, data) ?? false;
  }

  // ---------------------------------------------------------------- compressed prefixes

  /**
   * What names a compressed prefix's pages: the prefix cache's key chain of
   * `src`'s first `end` tokens (token ids, image hashes, namespace), the
   * tokens past the last full page, and how it was compressed. Null without a prefix cache.
   */
  compressedPrefixKey(src: PrefixSource, end: number, how: { press: string; ratio: number; window: number }): string | null {
    if (!this.prefix) return null;
    const full = Math.floor(end / this.pageSize);
    const chain = this.prefix.identities(src, full);
    const tail = full * this.pageSize;
    return hash53(JSON.stringify([this.prefix.namespace, chain.at(-1)?.key ?? '', src.tokens(tail, end - tail), src.extraKey(tail, end - tail), end, how.press, how.ratio, how.window]));
  }

  /**
   * Shares the first `keep` slots (whole pages) of a sequence a press just
   * compacted as the compressed prefix `key`: its pages join the prefix
   * cache read-only under keys derived from `key`; the sequence writes only later pages.
   */
  publishCompressed(seqId: SeqId, key: string, keep: number): void {
    const seq = this.get(seqId, 'publishCompressed');
    if (!this.prefix || keep % this.pageSize !== 0 || keep > seq.numSlots) return;
    const id = `${String(seqId)}#compressed`;
    this.prefix.publish(id, compressedSource(key), seq.pages, keep);
    this.prefix.drop(id);
  }

  /**
   * Starts `seqId` on the compressed prefix `key` (`keep` slots standing for
   * the prompt's first `end` tokens) when every page of it is here — GPU
   * cache or CPU tier. Returns whether it did.
   */
  adoptCompressed(seqId: SeqId, key: string, end: number, keep: number): boolean {
    if (this.seqs.has(seqId)) throw new Error(`KVCacheManager.adoptCompressed: sequence ${JSON.stringify(seqId)} already holds pages`);
    if (!this.prefix || keep <= 0) return false;
    const id = `${String(seqId)}#compressed`;
    const src = compressedSource(key);
    const pages = this.prefix.lookup(id, src, keep);
    for (const p of pages) this.pool.reclaim(p);
    const gpu = pages.length;
    pages.push(...this.promote(id, src, keep / this.pageSize, pages.length));
    this.last = { gpu, cpu: pages.length - gpu };
    this.prefix.drop(id);
    if (pages.length * this.pageSize < keep) {
      this.pool.free(pages.reverse());
      return false;
    }
    this.seqs.set(seqId, { pages, numSlots: keep, positionOffset: end - keep, compressed: true });
    return true;
  }

  /** Whether every page of the compressed prefix `key` (`keep` slots) is here: GPU cache or CPU tier. */
  holdsCompressed(key: string, keep: number): boolean {
    return keep > 0 && this.heldPrefix(compressedSource(key), keep).held * this.pageSize >= keep;
  }

  /** The stored-tier identities of a compressed prefix's pages not held here (what a persistent tier may have). */
  restorableCompressed(key: string, keep: number): StoredPageId[] {
    return this.restorable(compressedSource(key), keep);
  }

  /** The PrefixKey of the sequence's first `pages` pages (null without a prefix cache). */
  prefixKey(seqId: SeqId, src: PrefixSource, pages: number): PrefixKey | null {
    return this.prefix?.key(seqId, src, pages) ?? null;
  }

  /** Sequences the prefix cache keeps keys for (0 once every sequence is released). */
  get numPrefixTracked(): number {
    return this.prefix?.numTracked ?? 0;
  }

  get prefixCacheEnabled(): boolean {
    return this.prefix !== null;
  }

  prefixStats(): PrefixCacheStats {
    return this.prefix?.snapshot() ?? { lookups: 0, hitRequests: 0, hitTokens: 0, hitPages: 0, missPages: 0, cachedPages: 0, reusedPages: 0 };
  }

  /** The cached pages the pool handed out again since the last call (also drained by drainTransfers). */
  drainReusedPages(): number[] {
    return this.pool.drainReused();
  }

  /**
   * What the next step must copy before it runs (downloads of pages handed
   * out again, then uploads into fresh pages), in that order; empties the queue.
   */
  drainTransfers(): { downloads: PendingDownload[]; uploads: PendingUpload[] } {
    this.pool.drainReused();
    return this.transfers.drain();
  }

  /** Slots the last prefix lookup (getComputedPages, adoptCompressed) found in the GPU pool and in the CPU tier. */
  get lastHit(): { gpuSlots: number; cpuSlots: number } {
    return { gpuSlots: this.last.gpu * this.pageSize, cpuSlots: this.last.cpu * this.pageSize };
  }

  /** The CPU tier's counters (null when there is none). */
  tierStats(): (ReturnType<CpuTier['snapshot']> & { promotedPages: number; swapOuts: number; swapIns: number; swappedSequences: number }) | null {
    if (!this.cpu) return null;
    const sw = this.swapped!;
    return { ...this.cpu.snapshot(), promotedPages: this.promotedPages, swapOuts: sw.outs, swapIns: sw.ins, swappedSequences: sw.size };
  }

  /** The sequence's KV bookkeeping, read-only (the unit a tier moves). */
  sequence(seqId: SeqId): Readonly<KvSequence> {
    return this.get(seqId, 'sequence');
  }

  /** The sequence's page ids, token order. A read-only view: copy it before the next allocateSlots. */
  blockTable(seqId: SeqId): readonly number[] {
    return this.get(seqId, 'blockTable').pages;
  }

  /** Slots holding the sequence's K/V. */
  numTokens(seqId: SeqId): number {
    return this.get(seqId, 'numTokens').numSlots;
  }

  /** Tokens a press evicted from the sequence: RoPE position = slot + positionOffset for tokens appended after. */
  positionOffset(seqId: SeqId): number {
    return this.get(seqId, 'positionOffset').positionOffset;
  }

  /** Global slot (page*pageSize + offset) of each token in [start, start+count); they must be allocated. */
  slotsFor(seqId: SeqId, start: number, count: number): Uint32Array {
    const seq = this.get(seqId, 'slotsFor');
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > seq.numSlots) {
      throw new RangeError(`KVCacheManager.slotsFor: tokens [${start}, ${start + count}) of sequence ${String(seqId)} are not allocated (it has ${seq.numSlots})`);
    }
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const t = start + i;
      out[i] = seq.pages[Math.floor(t / this.pageSize)] * this.pageSize + (t % this.pageSize);
    }
    return out;
  }

  /** Returns all the sequence's pages to the pool (last page first, see BlockPool) and forgets it. */
  free(seqId: SeqId): void {
    const seq = this.get(seqId, 'free');
    this.pool.free([...seq.pages].reverse());
    this.seqs.delete(seqId);
    this.prefix?.drop(seqId);
  }

  /**
   * Drops the full page at `index` of the sequence's block table (a rolling
   * window's oldest page after its sinks): it goes back to the pool, the
   * slots after it move down a page and the position offset grows by one;
   * the pages are private from now on (never published).
   */
  dropPage(seqId: SeqId, index: number): void {
    const seq = this.get(seqId, 'dropPage');
    if (!Number.isInteger(index) || index < 0 || index >= seq.pages.length - 1) {
      throw new RangeError(`KVCacheManager.dropPage: page ${index} of sequence ${String(seqId)} is not a full page (it has ${seq.pages.length}, the last may be partial)`);
    }
    const [page] = seq.pages.splice(index, 1);
    this.pool.free([page]);
    seq.numSlots -= this.pageSize;
    seq.positionOffset += this.pageSize;
    seq.compressed = true;
  }

  /** Frees the sequence's pages if it holds any, and forgets everything known of it (its prefix keys, a swapped-out copy). */
  release(seqId: SeqId): void {
    if (this.seqs.has(seqId)) this.free(seqId);
    else this.prefix?.drop(seqId);
    this.swapped?.drop(seqId);
  }

  /**
   * Swaps a sequence out to the CPU tier, keeping its first `numSlots` slots
   * (what its computed tokens hold): its pages go back to the pool now, and
   * their contents are saved by the next step before anything overwrites
   * them. False — changing nothing — when there is no CPU tier or no room in it.
   */
  swapOut(seqId: SeqId, numSlots: number): boolean {
    const seq = this.get(seqId, 'swapOut');
    if (!this.swapped || !Number.isInteger(numSlots) || numSlots <= 0 || numSlots > seq.numSlots) return false;
    if (!this.swapped.save(seqId, seq, numSlots, this.pagesFor(numSlots))) return false;
    this.free(seqId);
    return true;
  }

  /**
   * Brings a swapped-out sequence back into fresh pages (uploads the next
   * step carries out), as it was. 'pending': its pages are still on their
   * way to the CPU tier; 'no-pages': too few free pages now.
   */
  swapIn(seqId: SeqId): 'ready' | 'pending' | 'no-pages' {
    if (!this.swapped) throw new Error(`KVCacheManager.swapIn: sequence ${JSON.stringify(seqId)} is not swapped out`);
    const seq = this.swapped.restore(seqId, (n) => this.pool.allocate(n));
    if (typeof seq === 'string') return seq;
    this.seqs.set(seqId, seq);
    return 'ready';
  }

  isSwapped(seqId: SeqId): boolean {
    return this.swapped?.has(seqId) ?? false;
  }

  /** Bytes a swap-out of `numSlots` slots moves (each way). */
  swapBytes(numSlots: number): number {
    return this.swapped?.bytesFor(this.pagesFor(numSlots)) ?? 0;
  }

  /**
   * Records a compaction: a press moved the sequence's `keep` kept tokens to
   * its first slots, in place. Trailing pages go back to the pool at once;
   * the evicted count joins the position offset; the pages are now private
   * (compressed). Returns how many pages were freed.
   */
  compact(seqId: SeqId, keep: number): number {
    const seq = this.get(seqId, 'compact');
    if (!Number.isInteger(keep) || keep < 0 || keep > seq.numSlots) {
      throw new RangeError(`KVCacheManager.compact: sequence ${String(seqId)} holds ${seq.numSlots} tokens; cannot keep ${keep}`);
    }
    const freed = seq.pages.splice(this.pagesFor(keep));
    this.pool.free(freed.reverse());
    seq.positionOffset += seq.numSlots - keep;
    seq.numSlots = keep;
    seq.compressed = true;
    return freed.length;
  }

  /** Whether `numTokens` more tokens fit: for a new sequence, or appended to `seqId` when given. */
  canFit(numTokens: number, seqId?: SeqId): boolean {
    const seq = seqId === undefined ? undefined : this.get(seqId, 'canFit');
    const have = seq ? seq.pages.length : 0;
    return this.pagesFor((seq?.numSlots ?? 0) + numTokens) - have <= this.pool.numFree;
  }

  has(seqId: SeqId): boolean {
    return this.seqs.has(seqId);
  }

  sequenceIds(): SeqId[] {
    return [...this.seqs.keys()];
  }

  get numFreePages(): number {
    return this.pool.numFree;
  }

  get numTotalPages(): number {
    return this.pool.numPages;
  }

  get numSequences(): number {
    return this.seqs.size;
  }

  /** Pages needed to hold `numTokens` tokens. */
  pagesFor(numTokens: number): number {
    return Math.ceil(numTokens / this.pageSize);
  }

  /**
   * Throws when the tables and the pool disagree: each sequence holds exactly
   * the pages its tokens need, every page it holds is in use, and a page is
   * referenced at least as often as it appears in tables.
   */
  checkInvariants(): void {
    this.pool.checkInvariants();
    const uses = new Map<number, number>();
    for (const [id, s] of this.seqs) {
      if (s.pages.length !== this.pagesFor(s.numSlots)) throw new Error(`KVCacheManager invariant: sequence ${String(id)} has ${s.numSlots} tokens in ${s.pages.length} pages`);
      for (const p of s.pages) uses.set(p, (uses.get(p) ?? 0) + 1);
    }
    for (const [p, n] of uses) {
      if (this.pool.refCount(p) < n) throw new Error(`KVCacheManager invariant: page ${p} is in ${n} table(s) but has refCount ${this.pool.refCount(p)}`);
    }
    this.prefix?.checkInvariants();
    this.cpu?.checkInvariants();
    for (const id of this.swapped?.ids() ?? []) if (this.seqs.has(id)) throw new Error(`KVCacheManager invariant: sequence ${String(id)} is both in the pool and swapped out`);
  }

  debugString(maxSeqs = 16): string {
    const head = `KVCacheManager pageSize=${this.pageSize} sequences=${this.seqs.size} pages used=${this.pool.numUsed}/${this.pool.numPages}`;
    return [head, ...describeSequences(this.seqs, this.pageSize, maxSeqs)].join('\n');
  }

  // ---------------------------------------------------------------- helpers

  /**
   * Continues a prefix lookup past the GPU hits (pages [0, from)) into the
   * CPU tier: pages found there get fresh pages, filled by uploads the next
   * step carries out, and join the prefix cache at once.
   */
  private promote(seqId: SeqId, src: PrefixSource, maxPages: number, from: number): number[] {
    if (!this.cpu || !this.prefix || from >= maxPages) return [];
    const found: ArrayBuffer[] = [];
    for (let i = from; i < maxPages; i++) {
      const { key, content } = this.prefix.pageIdentity(seqId, src, i);
      const data = this.cpu.get(key, content);
      if (!data) break;
      found.push(data);
    }
    const fresh = found.length ? this.pool.allocate(found.length) : null;
    if (!fresh) return [];
    fresh.forEach((page, j) => {
      this.transfers.upload(page, found[j]);
      this.prefix!.publishPromoted(seqId, src, from + j, page);
    });
    this.promotedPages += fresh.length;
    return fresh;
  }

  private get(seqId: SeqId, op: string): KvSequence {
    const s = this.seqs.get(seqId);
    if (!s) throw new Error(`KVCacheManager.${op}: unknown sequence id ${JSON.stringify(seqId)}`);
    return s;
  }
}

/** A compressed prefix as the prefix cache keys it: no token ids of its own, page i named by the prefix's key. */
function compressedSource(key: string): PrefixSource {
  return { tokens: () => [], extraKey: (start) => `compressed:${key}:${start}` };
}
