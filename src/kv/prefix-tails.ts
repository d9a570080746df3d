/**
 * Prefix tails: the partly filled page where a reusable prefix ends.
 *
 * The prefix cache shares whole pages only, so a prefix that ends inside a
 * page — a picture's last tokens, with the question after them — loses its
 * last few tokens to every later prompt that asks something else: they are
 * prefilled again, and a picture among them needs its features, so the
 * vision encoder runs again even though the rest of its KV is cached.
 *
 * A tail is that page's bytes, saved once (one download with the step's
 * others) into the CPU tier and written through to the persistent tier, and
 * keyed by the full pages' chain plus the tail's own tokens and extra keys
 * (image content), so equal keys still mean equal K/V. A later prompt whose
 * full pages hit up to the boundary gets a private copy in a fresh page (an
 * upload) and prefills only what follows. Slots past the boundary in the
 * saved page are the first prompt's; the adopter overwrites them before any
 * kernel reads them (attention reads only its own slots).
 */
import type { BlockPool } from './block-pool.ts';
import type { KvSequence } from './kv-sequence.ts';
import type { PrefixCache } from './prefix-cache.ts';
import { hash53, type PrefixSource } from './prefix-key.ts';
import type { CpuTier } from './tiers/cpu-tier.ts';
import type { PagePersister, StoredPageId } from './tiers/persistent-tier.ts';
import type { TransferQueue } from './tiers/transfer-queue.ts';

/**
 * The furthest of `ends` (ascending) inside the page after `held` tokens (a
 * whole number of pages) and no further than `limit`: the one tail a prompt
 * whose full pages stop at `held` can take next; undefined when none.
 */
export function tailAfter(ends: readonly number[], held: number, pageSize: number, limit: number): number | undefined {
  for (let i = ends.length - 1; i >= 0; i--) if (ends[i] > held && ends[i] < held + pageSize && ends[i] <= limit) return ends[i];
  return undefined;
}

export class PrefixTails {
  constructor(
    private readonly prefix: PrefixCache,
    private readonly cpu: CpuTier,
    private readonly transfers: TransferQueue,
    private readonly pool: BlockPool,
    private readonly persist: PagePersister | null,
  ) {}

  /** What names the tail of `src`'s first `end` tokens (its index: the page it fills); null when `end` is a page boundary. */
  id(src: PrefixSource, end: number): StoredPageId | null {
    const P = this.prefix.pageSize;
    const full = Math.floor(end / P);
    const n = end - full * P;
    if (n === 0) return null;
    const parent = this.prefix.identities(src, full).at(-1)?.key ?? this.prefix.namespace;
    const content = `tail|${parent}|${src.tokens(full * P, n).join(',')}|${src.extraKey(full * P, n)}`;
    return { key: hash53(content), content, index: full };
  }

  /** Saves the tail at `end` of a sequence that has computed past it (unless this tier has it): its page is copied out by the next step. */
  save(seq: Readonly<KvSequence>, src: PrefixSource, end: number): void {
    const id = this.id(src, end);
    if (!id || seq.positionOffset !== 0 || seq.numSlots < end || this.cpu.has(id.key, id.content)) return;
    this.transfers.download(seq.pages[id.index], (data) => {
      this.cpu.put(id.key, id.content, data);
      if (this.persist && !this.persist.has(id.key)) this.persist.put(id, data);
    });
  }

  /**
   * Extends `seq` — holding exactly the full pages before `end` — with a copy
   * of the tail in a fresh page (uploaded by the next step). False, changing
   * nothing, when this tier lacks it or the pool has no free page.
   */
  adopt(seq: KvSequence, src: PrefixSource, end: number): boolean {
    const id = this.id(src, end);
    if (!id || seq.numSlots !== id.index * this.prefix.pageSize || seq.positionOffset !== 0) return false;
    const data = this.cpu.get(id.key, id.content);
    const page = data ? this.pool.allocate(1) : null;
    if (!data || !page) return false;
    this.transfers.upload(page[0], data);
    seq.pages.push(page[0]);
    seq.numSlots = end;
    return true;
  }

  /** Whether the CPU tier holds the tail at `end`. */
  holds(src: PrefixSource, end: number): boolean {
    const id = this.id(src, end);
    return id !== null && this.cpu.has(id.key, id.content);
  }
}
