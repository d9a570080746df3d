/**
 * BlockPool: the page allocator behind the paged KV cache. It owns the free
 * list and the reference counts of `numPages` page ids; it knows nothing of
 * sequences (KVCacheManager) or of GPU memory (KvPool). Pure CPU.
 *
 * Free list order (LRU): `allocate` takes pages from the head, `free` appends
 * pages whose count drops to 0 at the tail, in the order given. So the page
 * reused first is the one freed longest ago — a freed page keeps its K/V
 * contents as long as possible, which a prefix cache can later exploit.
 * Callers that free a sequence pass its pages last-first (KVCacheManager
 * does), so a sequence's tail is evicted before its (more shareable) head.
 *
 *   head                                   tail
 *    │                                      │
 *    ▼                                      ▼
 *   [p7] ⇄ [p2] ⇄ [p9] ⇄ ... ⇄ [p4]   allocate() pops ◀ head, free() pushes tail ◀
 *
 * The list is intrusive (two Int32Arrays of prev/next links plus a sentinel),
 * so unlinking any page is O(1).
 *
 * Cached pages: a page whose contents someone wants to find again (the
 * prefix cache) is marked with `setCached`. When `allocate` hands a cached
 * free page out again, its old contents are about to be overwritten: the
 * pool unmarks it, tells every reuse listener at once (the prefix cache
 * forgets its key), and keeps it in a list that the next step drains
 * (`drainReused`) — so a lower tier can copy the contents out before the
 * step's kernels write the page.
 *
 * Reference counts: a page is free ⇔ refCount 0 ⇔ it is in the free list.
 * `allocate` hands pages out at count 1; `incRef` shares a used page (it
 * refuses a free page: reviving cached free pages is the prefix cache's job);
 * `free` decrements and returns a page to the list at 0.
 */
export class BlockPool {
  private readonly refs: Uint32Array;
  /** next[i] / prev[i]: free-list links; index numPages is the sentinel. -1 = not in the list. */
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly cached: Uint8Array;
  private readonly reuseListeners = new Set<(page: number) => void>();
  private reused: number[] = [];
  private free_ = 0;
  private peak = 0;
  /** Cached pages handed out again since construction. */
  numReused = 0;

  constructor(readonly numPages: number) {
    if (!Number.isInteger(numPages) || numPages < 0) throw new RangeError(`BlockPool: numPages must be a non-negative integer, got ${numPages}`);
    this.refs = new Uint32Array(numPages);
    this.cached = new Uint8Array(numPages);
    this.next = new Int32Array(numPages + 1).fill(-1);
    this.prev = new Int32Array(numPages + 1).fill(-1);
    const s = numPages;
    this.next[s] = s;
    this.prev[s] = s;
    for (let p = 0; p < numPages; p++) this.pushTail(p);
  }

  // ---------------------------------------------------------------- public API

  /** Takes `n` free pages (refCount 1 each), or returns null — and changes nothing — when fewer than `n` are free. */
  allocate(n: number): number[] | null {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`BlockPool.allocate: n must be a non-negative integer, got ${n}`);
    if (n > this.free_) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = this.next[this.numPages];
      this.unlink(p);
      this.refs[p] = 1;
      out.push(p);
      if (this.cached[p]) this.reuse(p);
    }
    this.peak = Math.max(this.peak, this.numUsed);
    return out;
  }

  /**
   * Takes one more reference to a page whose contents are wanted again (a
   * prefix-cache hit): a free page leaves the free list, a used page is shared.
   */
  reclaim(page: number): void {
    this.checkPage('reclaim', page);
    if (this.refs[page] === 0) {
      this.unlink(page);
    }
    this.refs[page]++;
    this.peak = Math.max(this.peak, this.numUsed);
  }

  /** Adds one reference to each page (a page listed twice gets two). Every page must be in use. */
  incRef(pages: readonly number[]): void {
    for (const p of pages) {
      this.checkPage('incRef', p);
      if (this.refs[p] === 0) throw new Error(`BlockPool.incRef: page ${p} is free; allocate it before sharing it`);
    }
    for (const p of pages) this.refs[p]++;
  }

  /**
   * Drops one reference from each page (a page listed twice loses two); pages
   * reaching 0 go to the tail of the free list in the order given. Throws —
   * and changes nothing — on a double free.
   */
  free(pages: readonly number[]): void {
    const drops = new Map<number, number>();
    for (const p of pages) {
      this.checkPage('free', p);
      const d = (drops.get(p) ?? 0) + 1;
      if (d > this.refs[p]) throw new Error(`BlockPool.free: page ${p} has refCount ${this.refs[p]} but is freed ${d} time(s) (double free)`);
      drops.set(p, d);
    }
    for (const p of pages) {
      if (--this.refs[p] === 0) this.pushTail(p);
    }
  }

  /** Marks (or unmarks) a page whose contents a cache may ask for again. */
  setCached(page: number, cached: boolean): void {
    this.checkPage('setCached', page);
    this.cached[page] = cached ? 1 : 0;
  }

  isCached(page: number): boolean {
    this.checkPage('isCached', page);
    return this.cached[page] === 1;
  }

  /**
   * Calls `listener(page)` whenever a cached page is handed out again, at the
   * moment `allocate` takes it (before anyone can write it). Returns the unsubscribe.
   */
  addReuseListener(listener: (page: number) => void): () => void {
    this.reuseListeners.add(listener);
    return () => this.reuseListeners.delete(listener);
  }

  /** The cached pages handed out again since the last call, in allocation order (the step drains this before it writes). */
  drainReused(): number[] {
    const out = this.reused;
    this.reused = [];
    return out;
  }

  get numFree(): number {
    return this.free_;
  }

  get numUsed(): number {
    return this.numPages - this.free_;
  }

  /** Most pages in use at once since construction or `resetPeak()`. */
  get peakUsed(): number {
    return this.peak;
  }

  resetPeak(): void {
    this.peak = this.numUsed;
  }

  refCount(page: number): number {
    this.checkPage('refCount', page);
    return this.refs[page];
  }

  /** The free pages, head (next to be allocated) first. */
  freePages(): number[] {
    const out: number[] = [];
    for (let p = this.next[this.numPages]; p !== this.numPages; p = this.next[p]) out.push(p);
    return out;
  }

  /** Throws if the free list and the counts disagree (tests call this after every step). */
  checkInvariants(): void {
    const seen = new Uint8Array(this.numPages);
    let n = 0;
    for (let p = this.next[this.numPages]; p !== this.numPages; p = this.next[p]) {
      if (p < 0 || p >= this.numPages) throw new Error(`BlockPool invariant: free list links to ${p}`);
      if (seen[p]) throw new Error(`BlockPool invariant: page ${p} twice in the free list`);
      if (this.refs[p] !== 0) throw new Error(`BlockPool invariant: page ${p} in the free list with refCount ${this.refs[p]}`);
      if (this.prev[this.next[p]] !== p) throw new Error(`BlockPool invariant: broken back link after page ${p}`);
      seen[p] = 1;
      n++;
    }
    if (n !== this.free_) throw new Error(`BlockPool invariant: free list holds ${n} pages, counter says ${this.free_}`);
    for (let p = 0; p < this.numPages; p++) {
      if (!seen[p] && this.refs[p] === 0) throw new Error(`BlockPool invariant: page ${p} has refCount 0 but is not in the free list`);
    }
    if (this.peak < this.numUsed) throw new Error(`BlockPool invariant: peakUsed ${this.peak} < numUsed ${this.numUsed}`);
  }

  /** One line of counts, then the used pages with their counts and the head of the free list. */
  debugString(maxItems = 32): string {
    const used: string[] = [];
    for (let p = 0; p < this.numPages && used.length < maxItems; p++) if (this.refs[p] > 0) used.push(`${p}×${this.refs[p]}`);
    const free = this.freePages();
    const more = (shown: number, total: number) => (total > shown ? ` …+${total - shown}` : '');
    return [
      `BlockPool pages=${this.numPages} used=${this.numUsed} free=${this.numFree} peak=${this.peak}`,
      `  used: [${used.join(' ')}${more(used.length, this.numUsed)}]`,
      `  free (head→tail): [${free.slice(0, maxItems).join(' ')}${more(Math.min(maxItems, free.length), free.length)}]`,
    ].join('\n');
  }

  // ---------------------------------------------------------------- helpers

  private checkPage(op: string, p: number): void {
    if (!Number.isInteger(p) || p < 0 || p >= this.numPages) throw new RangeError(`BlockPool.${op}: page ${p} is not in 0..${this.numPages - 1}`);
  }

  private reuse(p: number): void {
    this.cached[p] = 0;
    this.numReused++;
    this.reused.push(p);
    for (const l of this.reuseListeners) l(p);
  }

  private pushTail(p: number): void {
    const s = this.numPages;
    const last = this.prev[s];
    this.next[last] = p;
    this.prev[p] = last;
    this.next[p] = s;
    this.prev[s] = p;
    this.free_++;
  }

  private unlink(p: number): void {
    this.next[this.prev[p]] = this.next[p];
    this.prev[this.next[p]] = this.prev[p];
    this.next[p] = -1;
    this.prev[p] = -1;
    this.free_--;
  }
}
