/**
 * SwapSpace: sequences swapped out to the CPU tier (preemption by offload,
 * vLLM's swap space) — each one's KvSequence fields and its pages' bytes,
 * their room reserved in the CPU tier's budget from the swap-out until it is
 * swapped back in or released. The copies themselves are page transfers the
 * next step carries out (TransferQueue): downloads out, uploads back in.
 */
import type { KvSequence, SeqId } from './kv-sequence.ts';
import type { CpuTier } from './tiers/cpu-tier.ts';
import type { TransferQueue } from './tiers/transfer-queue.ts';

interface SwapEntry {
  numSlots: number;
  positionOffset: number;
  compressed: boolean;
  /** One per page, null until its download lands. */
  data: (ArrayBuffer | null)[];
  missing: number;
  bytes: number;
}

export class SwapSpace {
  private readonly entries = new Map<SeqId, SwapEntry>();
  private readonly counts = { outs: 0, ins: 0 };

  constructor(
    private readonly cpu: CpuTier,
    private readonly pageBytes: number,
    private readonly transfers: TransferQueue,
  ) {}

  /**
   * Saves the first `pages` pages of `seq` (the slots its computed tokens
   * hold: `numSlots`): room reserved now, downloads queued for the next
   * step. False — changing nothing — when the CPU tier has no room.
   */
  save(seqId: SeqId, seq: Readonly<KvSequence>, numSlots: number, pages: number): boolean {
    if (!this.cpu.reserve(pages * this.pageBytes)) return false;
    const entry: SwapEntry = { numSlots, positionOffset: seq.positionOffset, compressed: seq.compressed, data: new Array(pages).fill(null), missing: pages, bytes: pages * this.pageBytes };
    seq.pages.slice(0, pages).forEach((page, i) => this.transfers.download(page, (d) => {
      entry.data[i] = d;
      entry.missing--;
    }));
    this.entries.set(seqId, entry);
    this.counts.outs++;
    return true;
  }

  /**
   * The sequence back in fresh pages from `allocate` (uploads the next step
   * carries out), as it was; 'pending' while its downloads are still on
   * their way; 'no-pages' when `allocate` has too few.
   */
  restore(seqId: SeqId, allocate: (n: number) => number[] | null): KvSequence | 'pending' | 'no-pages' {
    const e = this.entries.get(seqId);
    if (!e) throw new Error(`KVCacheManager.swapIn: sequence ${JSON.stringify(seqId)} is not swapped out`);
    if (e.missing > 0) return 'pending';
    const pages = allocate(e.data.length);
    if (!pages) return 'no-pages';
    pages.forEach((p, i) => this.transfers.upload(p, e.data[i]!));
    this.drop(seqId);
    this.counts.ins++;
    return { pages, numSlots: e.numSlots, positionOffset: e.positionOffset, compressed: e.compressed };
  }

  has(seqId: SeqId): boolean {
    return this.entries.has(seqId);
  }

  /** Forgets a swapped-out sequence and gives its room back to the CPU tier. */
  drop(seqId: SeqId): void {
    const e = this.entries.get(seqId);
    if (!e) return;
    this.entries.delete(seqId);
    this.cpu.unreserve(e.bytes);
  }

  /** Bytes `pages` pages move (each way). */
  bytesFor(pages: number): number {
    return pages * this.pageBytes;
  }

  ids(): IterableIterator<SeqId> {
    return this.entries.keys();
  }

  get size(): number {
    return this.entries.size;
  }

  get outs(): number {
    return this.counts.outs;
  }

  get ins(): number {
    return this.counts.ins;
  }
}
