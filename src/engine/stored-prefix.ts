/**
 * Restoring a prompt's prefix from the persistent tier: before a prepared
 * prompt reaches the scheduler (whose lookups are synchronous), the pages of
 * its prefix that neither the GPU prefix cache nor the CPU tier holds are
 * read from the persistent tier — verified there — and staged in the CPU
 * tier, where the scheduler's prefix lookup promotes them into GPU pages.
 * Never an error for the request: a store that fails is a miss.
 */
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import type { PrefixSource } from '../kv/prefix-key.ts';
import type { PersistentTier, StoredPageId } from '../kv/tiers/persistent-tier.ts';
import { tailAfter } from '../kv/prefix-tails.ts';
import { imagesExtraKey, type PromptImage } from '../scheduler/request.ts';

/** What a prompt's prefix keys are computed from (a PromptIds is one). */
type PromptIds = { ids: readonly number[]; images: readonly PromptImage[] };

/** The prompt as the prefix cache keys it (the same keys its Request will have). */
export function promptSource(prompt: PromptIds): PrefixSource {
  return {
    tokens: (start, count) => prompt.ids.slice(start, start + count),
    extraKey: (start, count) => imagesExtraKey(prompt.images, start, count),
  };
}

/**
 * Stages what the persistent tier has of `prompt`'s prefix — its full
 * pages, then the furthest of its tails (`tailEnds`, ascending: where a
 * picture or a ratio-0 cache prefix ends inside the page after them;
 * src/kv/prefix-tails.ts) — and of its compressed cache prefix, when it has
 * one (`compressed`: key and kept slots); returns the tokens (slots) staged.
 */
export async function restorePrefix(kv: KVCacheManager, store: PersistentTier, prompt: PromptIds, compressed: { key: string; keep: number } | null, tailEnds: readonly number[]): Promise<number> {
  const src = promptSource(prompt);
  const max = prompt.ids.length - 1; // at least the last token is computed: its step samples the next one (as the scheduler's lookup)
  let tokens = (await stage(kv, store, kv.restorable(src, max))) * kv.pageSize;
  const held = kv.cachedPrefixTokens(src, max);
  const end = tailAfter(tailEnds, held, kv.pageSize, max);
  if (end !== undefined) tokens += (await stage(kv, store, kv.restorableTail(src, end))) * (end - held);
  if (compressed) tokens += (await stage(kv, store, kv.restorableCompressed(compressed.key, compressed.keep))) * kv.pageSize;
  return tokens;
}

async function stage(kv: KVCacheManager, store: PersistentTier, ids: StoredPageId[]): Promise<number> {
  if (ids.length === 0) return 0;
  const pages = await store.getRun(ids).catch(() => []);
  let staged = 0;
  for (let i = 0; i < pages.length && kv.stage(ids[i], pages[i]); i++) staged++;
  return staged;
}
