import type { SamplingParams } from '../gpu/kernels/sample.ts';
import type { PrefixSource } from '../kv/prefix-key.ts';
import type { KvWindow } from '../api/chat-types.ts';

/**
 * One request as the scheduler sees it: token counts, not phases. Its stage
 * is derived (STYLE rule 3):
 *
 *   tokens   [ prompt ............ | out0 out1 ... outK ]
 *   computed [ KV in the cache ...........]               numComputedTokens
 *
 *   prefill  — more than the last token lacks KV, or nothing was sampled yet
 *              (a fresh prompt, or a preempted request being recomputed):
 *              run tokens [numComputed, prefillEnd) in chunks; the chunk that
 *              reaches numTokens samples the next token.
 *   compress — its compression is pending (a press with ratio > 0 that has
 *              not run) and the whole prompt has KV. The press sees the
 *              prompt only — so a preempted request recomputes the prompt,
 *              stops there (prefillEnd), is compressed exactly as the first
 *              time, then recomputes its generated tokens over that cache.
 *   decode   — only the last sampled token lacks KV: feed it, sample one more.
 *
 * Only the Scheduler writes a Request after it is queued; the KV it holds
 * (slots, position offset) is the KV manager's KvSequence, not copied here.
 */
export type Stage = 'prefill' | 'compress' | 'decode';

/** How a request's prompt KV is compressed after prefill (see src/kv/presses). */
export interface CompressionSpec {
  press: string;
  /** Fraction of the compressible tokens to evict, 0..1 (0 = keep all). */
  ratio: number;
  /** Tokens [start, end) of the prompt that may be evicted; default the whole prompt. */
  region?: { start: number; end: number };
  /** Prompt tokens at the end whose queries attention-based presses score with (0 = none needed). */
  window: number;
  /**
   * A cache prefix (CachePrefixOptions): the press runs on the prompt's first
   * `end` tokens alone, before the rest is prefilled, keeps whole pages, and
   * the kept pages are shared under `key` (what names their content).
   */
  prefix?: { end: number; key: string };
}
/** An image in the prompt: its content key, the positions its features fill, and the features (f32 [rows, hidden]). */
export interface PromptImage {
  key: string;
  runs: readonly { start: number; count: number; featureRow: number }[];
  /**
   * The encoder's output, pinned in the feature cache while the request
   * lives; null when the KV of every position it fills was cached as the
   * prompt was prepared (no encoder run). Then `encode` pins them on demand:
   * the scheduler admits the request only once its prefix hit covers
   * `featurelessEnd` or the features are there.
   */
  features: GPUBuffer | null;
  encode?: () => Promise<GPUBuffer>;
}

/** 'error': the engine could not go on (its GPU device was lost); the result says why. */
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export interface RequestTimes {
  arrival: number; //         when the engine received it (ms, performance.now())
  firstScheduled?: number; // first step that ran any of its tokens
  prefillDone?: number; //    end of the step that finished its prompt (FastCache's TTFT clock)
  firstToken?: number; //     first token handed to the caller
  finished?: number;
}

/** What a request asks for, fixed when it is made. */
export interface RequestParams {
  maxNewTokens: number;
  sampling: SamplingParams;
  /** Sampled ids that end the request without being output (EOS); empty to ignore EOS. */
  stopTokenIds?: readonly number[];
  compression?: CompressionSpec | null;
  /** Teacher forcing: output i is forcedTokens[i] whatever the sampler drew. */
  forcedTokens?: readonly number[] | null;
  /** Keep the next-token logits of each step (quality measurements). */
  wantsLogits?: boolean;
  /** Images whose features replace the embeddings of image-token positions. */
  images?: readonly PromptImage[];
  /** A rolling KV window: pages that leave every later token's window go back to the pool. */
  window?: KvWindow | null;
  restoredTokens?: number;
  /** Where a ratio-0 cache prefix ends (0: none): one of its tailEnds. */
  prefixEnd?: number;
}

export class Request implements PrefixSource {
  readonly outputIds: number[] = [];
  numComputedTokens = 0;
  /** The prompt went through the compress stage (since the last preemption). */
  compressed = false;
  finishReason: FinishReason | null = null;
  numPreemptions = 0;
  /** Prompt tokens whose KV came from the prefix cache (last admission). */
  prefixHitTokens = 0;
  /** Of those, slots that came up from the CPU tier (the rest were in the GPU pool). */
  prefixCpuSlots = 0;
  /** Prompt tokens the stored tier staged for this prompt before it was queued. */
  readonly restoredTokens: number;
  /** Prompt tokens a press evicted from the cache (the current run's). */
  evictedTokens = 0;
  /**
   * Prompt positions where a reusable prefix ends inside a page — its last
   * picture's end, a ratio-0 cache prefix's end — ascending: each such page
   * is kept as a prefix tail (src/kv/prefix-tails.ts).
   */
  readonly tailEnds: readonly number[];
  /** How many of tailEnds (in order) were saved or found. */
  tailsSaved = 0;
  /** Preempted with its KV swapped out to the CPU tier: it resumes where it was, not from scratch. */
  swapped = false;
  readonly times: RequestTimes;
  readonly maxNewTokens: number;
  readonly sampling: SamplingParams;
  readonly stopTokenIds: readonly number[];
  readonly compression: CompressionSpec | null;
  readonly forcedTokens: readonly number[] | null;
  readonly wantsLogits: boolean;
  readonly images: readonly PromptImage[];
  readonly window: KvWindow | null;

  constructor(
    readonly id: string,
    readonly promptIds: readonly number[],
    params: RequestParams,
    arrival = performance.now(),
  ) {
    this.times = { arrival };
    this.maxNewTokens = params.maxNewTokens;
    this.sampling = params.sampling;
    this.stopTokenIds = params.stopTokenIds ?? [];
    this.compression = params.compression ?? null;
    this.forcedTokens = params.forcedTokens ?? null;
    this.wantsLogits = params.wantsLogits ?? false;
    this.images = params.images ?? [];
    this.window = params.window ?? null;
    this.restoredTokens = params.restoredTokens ?? 0;
    this.tailEnds = tailEnds(promptIds.length, this.images, params.prefixEnd ?? 0);
  }

  get numTokens(): number {
    return this.promptIds.length + this.outputIds.length;
  }

  /** A press will rewrite this request's prompt KV (ratio > 0) and has not yet. */
  get compressionPending(): boolean {
    const c = this.compression;
    return !this.compressed && c !== null && c.ratio > 0 && c.press !== 'none';
  }

  /** Where the current run of prefill chunks ends: the prompt's end while compression is pending, else every token. */
  get prefillEnd(): number {
    return this.compressionPending ? (this.compression!.prefix?.end ?? this.promptIds.length) : this.numTokens;
  }

  get stage(): Stage {
    const prefix = this.compressionPending ? this.compression!.prefix : undefined;
    if (prefix) return this.numComputedTokens < prefix.end ? 'prefill' : 'compress';
    if (this.compressionPending) return this.numComputedTokens < this.promptIds.length || this.outputIds.length === 0 ? 'prefill' : 'compress';
    return this.numComputedTokens < this.numTokens - 1 || this.outputIds.length === 0 ? 'prefill' : 'decode';
  }

  /** Tokens the chunk that reaches the prompt's end must hold, so the press sees its whole observation window. */
  get finalChunkMin(): number {
    return this.compressionPending ? Math.min(this.compression!.window, this.prefillEnd) : 0;
  }

  get finished(): boolean {
    return this.finishReason !== null;
  }

  /** Token ids of [start, start+count): prompt, then outputs. */
  tokens(start: number, count: number): number[] {
    const out: number[] = [];
    const p = this.promptIds.length;
    for (let i = start; i < start + count; i++) out.push(i < p ? this.promptIds[i] : this.outputIds[i - p]);
    return out;
  }

  /** Shares KV pages through the prefix cache: not when a press will rewrite them in place. */
  get prefixCacheable(): boolean {
    if (this.window) return false; // its pages leave the table from the middle
    return !this.compression || this.compression.ratio === 0 || this.compression.press === 'none';
  }

  /** Where the last image without features ends: positions before it can only come from the prefix cache (0: none). */
  get featurelessEnd(): number {
    return lastImageEnd(this.images, (img) => !img.features);
  }

  /** The image content behind tokens [start, start+count): part of their prefix-cache key. */
  extraKey(start: number, count: number): string {
    return imagesExtraKey(this.images, start, count);
  }
}

/** The prefix ends of a prompt of `n` tokens whose pages are kept as tails (see Request.tailEnds), ascending. */
export function tailEnds(n: number, images: readonly PromptImage[], prefixEnd: number): number[] {
  return [...new Set([prefixEnd, lastImageEnd(images)])].filter((e) => e > 0 && e < n).sort((a, b) => a - b);
}

/** Where the last of these pictures' tokens ends (0 without pictures); with `only`, of those it accepts (no array: asked every step). */
export function lastImageEnd(images: readonly PromptImage[], only?: (img: PromptImage) => boolean): number {
  let end = 0;
  for (const img of images) if (!only || only(img)) for (const r of img.runs) end = Math.max(end, r.start + r.count);
  return end;
}

/** The extra key of tokens [start, start+count) of a prompt with these images: each image's content hash and feature rows there. */
export function imagesExtraKey(images: readonly PromptImage[], start: number, count: number): string {
  const parts: string[] = [];
  for (const img of images) {
    for (const r of img.runs) {
      const a = Math.max(start, r.start);
      const b = Math.min(start + count, r.start + r.count);
      if (a < b) parts.push(`${img.key}@${r.featureRow + a - r.start}+${b - a}`);
    }
  }
  return parts.join(';');
}

/** Slots a cache prefix of `end` tokens keeps at `ratio`: what the press leaves, rounded down to whole pages (they are shared read-only). */
export function keptPrefixSlots(end: number, ratio: number, pageSize: number): number {
  return pageSize * Math.floor((end - Math.floor(end * ratio)) / pageSize);
}
