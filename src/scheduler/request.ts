import type { SamplingParams } from '../gpu/kernels/sample.ts';

/**
 * One request as the scheduler sees it: token counts, not phases. Its stage
 * is derived (STYLE rule 3):
 *
 *   tokens   [ prompt ............ | out0 out1 ... outK ]
 *   computed [ KV in the cache ...........]               numComputedTokens
 *
 *   prefill  — more than the last token lacks KV, or nothing was sampled yet
 *              (a fresh prompt, or a preempted request being recomputed):
 *              run tokens [numComputed, numTokens) in chunks; the chunk that
 *              reaches numTokens samples the next token.
 *   compress — prompt done, its KV not yet through the compress stage.
 *   decode   — only the last sampled token lacks KV: feed it, sample one more.
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
}
/** An image in the prompt: its content key, the positions its features fill, and the features (f32 [rows, hidden]). */
export interface PromptImage {
  key: string;
  runs: readonly { start: number; count: number; featureRow: number }[];
  features: GPUBuffer;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface RequestTimes {
  arrival: number; //         when the engine received it (ms, performance.now())
  firstScheduled?: number; // first step that ran any of its tokens
  prefillDone?: number; //    end of the step that finished its prompt (FastCache's TTFT clock)
  firstToken?: number; //     first token handed to the caller
  finished?: number;
}

export class Request {
  readonly outputIds: number[] = [];
  numComputedTokens = 0;
  compressed = false;
  /**
   * Tokens whose KV a press removed. The cache then holds numComputedTokens -
   * evictedTokens slots; RoPE positions stay the tokens' own (slot + evicted
   * for everything appended after compaction).
   */
  evictedTokens = 0;
  finishReason: FinishReason | null = null;
  numPreemptions = 0;
  readonly times: RequestTimes;
  compression: CompressionSpec | null = null;
  /** Teacher forcing: output i is forcedTokens[i] whatever the sampler drew. */
  forcedTokens: readonly number[] | null = null;
  /** Keep the next-token logits of each step (quality measurements). */
  wantsLogits = false;
  /** Images whose features replace the embeddings of image-token positions. */
  images: readonly PromptImage[] = [];
  /** Prompt tokens whose KV came from the prefix cache (last admission). */
  prefixHitTokens = 0;

  constructor(
    readonly id: string,
    readonly promptIds: readonly number[],
    readonly maxNewTokens: number,
    readonly sampling: SamplingParams,
    arrival = performance.now(),
  ) {
    this.times = { arrival };
  }

  /** KV slots the sequence holds (what the KV manager and attention count). */
  get numCachedSlots(): number {
    return this.numComputedTokens - this.evictedTokens;
  }

  get numTokens(): number {
    return this.promptIds.length + this.outputIds.length;
  }

  get stage(): Stage {
    if (this.numComputedTokens < this.numTokens - 1 || this.outputIds.length === 0) return 'prefill';
    return this.compressed ? 'decode' : 'compress';
  }

  /** Tokens the prompt's last prefill chunk must hold, so the press sees its whole observation window. */
  get finalChunkMin(): number {
    return this.compression && this.compression.ratio > 0 ? Math.min(this.compression.window, this.numTokens) : 0;
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
    return !this.compression || this.compression.ratio === 0;
  }

  /** The image content behind tokens [start, start+count): part of their prefix-cache key. */
  extraKey(start: number, count: number): string {
    const parts: string[] = [];
    for (const img of this.images) {
      for (const r of img.runs) {
        const a = Math.max(start, r.start);
        const b = Math.min(start + count, r.start + r.count);
        if (a < b) parts.push(`${img.key}@${r.featureRow + a - r.start}+${b - a}`);
      }
    }
    return parts.join(';');
  }

  /** Drops the KV bookkeeping after preemption: the tokens stay, the cache is recomputed later. */
  resetComputed(): void {
    this.numComputedTokens = 0;
    this.compressed = false;
    this.evictedTokens = 0;
    this.prefixHitTokens = 0;
    this.numPreemptions++;
  }
}
