import { encodeKvScorePosition } from '../../gpu/kernels/kv-score.ts';
import { KEEP_SCORE, type Press, type ScoreContext } from './press.ts';

export interface StreamingLlmOptions {
  /** Attention-sink tokens always kept at the start of the sequence (default 4). */
  sinks?: number;
}

/**
 * StreamingLLM: keep the first few tokens (attention sinks) and the most
 * recent ones.
 *
 *   score[g, j] = KEEP_SCORE   if j < sinks
 *               = j            otherwise (recency)
 *
 * so keeping the top n scores keeps the sinks plus the last n - sinks
 * tokens, the same for every kv head.
 *
 * Xiao et al. 2023, "Efficient Streaming Language Models with Attention
 * Sinks", https://arxiv.org/abs/2309.17453 — the first tokens soak up
 * attention mass whatever their content; dropping them breaks the model.
 * (kvpress StreamingLLMPress, n_sink = 4.)
 *
 * Kernel: shaders/kv_score_position.wgsl (one dispatch; reads no KV).
 */
export class StreamingLlmPress implements Press {
  readonly name = 'streaming-llm';
  readonly needsQueries = false;
  readonly sinks: number;

  constructor(options: StreamingLlmOptions = {}) {
    this.sinks = options.sinks ?? 4;
    if (!Number.isInteger(this.sinks) || this.sinks < 0) throw new RangeError(`press 'streaming-llm': sinks must be a non-negative integer, got ${this.sinks}`);
  }

  encodeScores(ctx: ScoreContext): void {
    encodeKvScorePosition(ctx.rec, { out: ctx.out, numKvHeads: ctx.numKvHeads, numTokens: ctx.numTokens, sinks: this.sinks, keepScore: KEEP_SCORE });
  }
}
