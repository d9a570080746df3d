import { BlockPool } from './block-pool.ts';

/** A sequence (request) id; any string or number the scheduler uses. */
export type SeqId = string | number;

/**
 * KVCacheManager: the block table of every live sequence. It asks the
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
  private readonly seqs = new Map<SeqId, { pages: number[]; tokens: number }>();

  constructor(
    readonly pool: BlockPool,
    readonly pageSize: number,
  ) {
    if (!Number.isInteger(pageSize) || pageSize <= 0) throw new RangeError(`KVCacheManager: pageSize must be a positive integer, got ${pageSize}`);
  }

  /** A manager over a fresh pool of `numPages` pages: no GPU needed (tests, planning). */
  static simulated(numPages: number, pageSize = 16): KVCacheManager {
    return new KVCacheManager(new BlockPool(numPages), pageSize);
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
    const seq = this.seqs.get(seqId) ?? { pages: [], tokens: 0 };
    const needed = this.pagesFor(seq.tokens + numNewTokens) - seq.pages.length;
    const pages = this.pool.allocate(Math.max(0, needed));
    if (!pages) return false;
    seq.pages.push(...pages);
    seq.tokens += numNewTokens;
    this.seqs.set(seqId, seq);
    return true;
  }

  /**
   * Starts `seqId` on pages that already hold its first `pages.length * pageSize`
   * tokens (a prefix-cache hit; the caller has taken a reference on each).
   */
  adopt(seqId: SeqId, pages: readonly number[]): void {
    if (this.seqs.has(seqId)) throw new Error(`KVCacheManager.adopt: sequence ${JSON.stringify(seqId)} already exists`);
    this.seqs.set(seqId, { pages: [...pages], tokens: pages.length * this.pageSize });
  }

  /** The sequence's page ids, token order. A read-only view: copy it before the next allocateSlots. */
  blockTable(seqId: SeqId): readonly number[] {
    return this.get(seqId, 'blockTable').pages;
  }

  numTokens(seqId: SeqId): number {
    return this.get(seqId, 'numTokens').tokens;
  }

  /** Global slot (page*pageSize + offset) of each token in [start, start+count); they must be allocated. */
  slotsFor(seqId: SeqId, start: number, count: number): Uint32Array {
    const seq = this.get(seqId, 'slotsFor');
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > seq.tokens) {
      throw new RangeError(`KVCacheManager.slotsFor: tokens [${start}, ${start + count}) of sequence ${String(seqId)} are not allocated (it has ${seq.tokens})`);
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
  }

  /**
   * Shortens a sequence to its first `numTokens` slots (after a press has
   * compacted the kept tokens to the front): trailing pages go back to the
   * pool at once. Returns how many pages were freed.
   */
  truncate(seqId: SeqId, numTokens: number): number {
    const seq = this.get(seqId, 'truncate');
    if (!Number.isInteger(numTokens) || numTokens < 0 || numTokens > seq.tokens) {
      throw new RangeError(`KVCacheManager.truncate: sequence ${String(seqId)} holds ${seq.tokens} tokens; cannot truncate to ${numTokens}`);
    }
    const keep = this.pagesFor(numTokens);
    const freed = seq.pages.splice(keep);
    this.pool.free(freed.reverse());
    seq.tokens = numTokens;
    return freed.length;
  }

  /** Whether `numTokens` more tokens fit: for a new sequence, or appended to `seqId` when given. */
  canFit(numTokens: number, seqId?: SeqId): boolean {
    const seq = seqId === undefined ? undefined : this.get(seqId, 'canFit');
    const have = seq ? seq.pages.length : 0;
    return this.pagesFor((seq?.tokens ?? 0) + numTokens) - have <= this.pool.numFree;
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
      if (s.pages.length !== this.pagesFor(s.tokens)) throw new Error(`KVCacheManager invariant: sequence ${String(id)} has ${s.tokens} tokens in ${s.pages.length} pages`);
      for (const p of s.pages) uses.set(p, (uses.get(p) ?? 0) + 1);
    }
    for (const [p, n] of uses) {
      if (this.pool.refCount(p) < n) throw new Error(`KVCacheManager invariant: page ${p} is in ${n} table(s) but has refCount ${this.pool.refCount(p)}`);
    }
  }

  debugString(maxSeqs = 16): string {
    const lines = [`KVCacheManager pageSize=${this.pageSize} sequences=${this.seqs.size} pages used=${this.pool.numUsed}/${this.pool.numPages}`];
    for (const [id, s] of [...this.seqs].slice(0, maxSeqs)) {
      const fill = s.tokens - (s.pages.length - 1) * this.pageSize;
      lines.push(`  ${String(id)}: ${s.tokens} tokens, pages [${s.pages.join(' ')}]${s.pages.length ? ` (last page ${fill}/${this.pageSize})` : ''}`);
    }
    if (this.seqs.size > maxSeqs) lines.push(`  …+${this.seqs.size - maxSeqs} more`);
    return lines.join('\n');
  }

  // ---------------------------------------------------------------- helpers

  private get(seqId: SeqId, op: string): { pages: number[]; tokens: number } {
    const s = this.seqs.get(seqId);
    if (!s) throw new Error(`KVCacheManager.${op}: unknown sequence id ${JSON.stringify(seqId)}`);
    return s;
  }
}
