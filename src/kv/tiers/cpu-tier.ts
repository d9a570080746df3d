/**
 * CpuTier: KV pages kept in this thread's memory when the GPU pool needs
 * their pages back (vLLM's CPU offloading, SGLang HiCache's host tier) —
 * the tier between the GPU pool and IndexedDB.
 *
 * An entry is one page's contents over every layer, in the pool's own
 * format (src/gpu/kv-layout.ts), keyed by the prefix cache's page key and
 * confirmed against the content string that key was hashed from, so a hash
 * collision is a miss, never wrong K/V. Least recently used entries go first
 * once the byte budget is passed; a budget of 0 keeps nothing.
 *
 *   put(key, content, bytes)   store (evicting LRU entries to make room)
 *   get(key, content)          the bytes, or null; a hit becomes most recent
 *   reserve(bytes)             pin room for a swapped-out sequence (cache
 *                              entries make way; false when it cannot fit)
 */
import { hash53 } from '../prefix-key.ts';

export interface CpuTierStats {
  budgetBytes: number;
  bytes: number;
  pages: number;
  /** Bytes pinned for swapped-out sequences. */
  reservedBytes: number;
  /** Pages stored (demotions from the GPU pool). */
  stored: number;
  hits: number;
  misses: number;
  /** Entries dropped for room. */
  evicted: number;
}

interface Entry {
  content: string;
  data: ArrayBuffer;
}

export class CpuTier {
  /** Map order is the LRU order: oldest first. */
  private readonly entries = new Map<string, Entry>();
  private bytes_ = 0;
  private reserved = 0;
  private readonly counts = { stored: 0, hits: 0, misses: 0, evicted: 0 };

  constructor(readonly budgetBytes: number) {
    if (typeof budgetBytes !== 'number' || !Number.isInteger(budgetBytes) || budgetBytes < 0) {
      throw new RangeError(`cpuCacheBytes must be a non-negative integer number of bytes (0 turns the CPU tier off), got ${String(budgetBytes)}`);
    }
  }

  /** Stores a page's bytes under `key`; false when it cannot fit the budget at all. */
  put(key: string, content: string, data: ArrayBuffer): boolean {
    if (data.byteLength > this.budgetBytes - this.reserved) return false;
    this.delete(key);
    while (this.bytes_ + this.reserved + data.byteLength > this.budgetBytes) this.evictOldest();
    this.entries.set(key, { content, data });
    this.bytes_ += data.byteLength;
    this.counts.stored++;
    return true;
  }

  /** The bytes stored under `key` if their content string matches, else null. */
  get(key: string, content: string): ArrayBuffer | null {
    const e = this.entries.get(key);
    if (!e || e.content !== content) {
      this.counts.misses++;
      return null;
    }
    this.entries.delete(key); // most recently used now
    this.entries.set(key, e);
    this.counts.hits++;
    return e.data;
  }

  /** Pins `bytes` of the budget (cache entries are evicted to make room); false, changing nothing, when they cannot fit. */
  reserve(bytes: number): boolean {
    if (bytes > this.budgetBytes - this.reserved) return false;
    while (this.bytes_ + this.reserved + bytes > this.budgetBytes) this.evictOldest();
    this.reserved += bytes;
    return true;
  }

  unreserve(bytes: number): void {
    if (bytes > this.reserved) throw new Error(`CpuTier.unreserve: ${bytes} bytes but only ${this.reserved} are reserved`);
    this.reserved -= bytes;
  }

  /** Whether `key` is stored (with this content, when given); no hit counted, no LRU change. */
  has(key: string, content?: string): boolean {
    const e = this.entries.get(key);
    return e !== undefined && (content === undefined || e.content === content);
  }

  delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes_ -= e.data.byteLength;
  }

  get bytes(): number {
    return this.bytes_;
  }

  snapshot(): CpuTierStats {
    return { budgetBytes: this.budgetBytes, bytes: this.bytes_, pages: this.entries.size, reservedBytes: this.reserved, ...this.counts };
  }

  /** Throws when the byte count or the budget is off, or an entry's key is not its content's hash. */
  checkInvariants(): void {
    let n = 0;
    for (const [k, e] of this.entries) {
      n += e.data.byteLength;
      if (hash53(e.content) !== k) throw new Error(`CpuTier invariant: entry ${k} does not hold the content its key names`);
    }
    if (n !== this.bytes_) throw new Error(`CpuTier invariant: entries hold ${n} bytes, the counter says ${this.bytes_}`);
    if (n + this.reserved > this.budgetBytes) throw new Error(`CpuTier invariant: ${n} bytes + ${this.reserved} reserved over the budget of ${this.budgetBytes}`);
  }

  // ---------------------------------------------------------------- helpers

  private evictOldest(): void {
    const oldest = this.entries.keys().next();
    if (oldest.done) throw new Error('CpuTier: nothing left to evict'); // unreachable: put checks the size first
    this.delete(oldest.value);
    this.counts.evicted++;
  }
}
