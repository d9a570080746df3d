import { encodeKvScorePosition } from '../../gpu/kernels/kv-score.ts';
import { KEEP_SCORE, type Press, type ScoreContext } from './press.ts';

/**
 * Sliding window: keep only the most recent tokens.
 *
 *   score[g, j] = j
 *
 * The local-attention baseline of Beltagy et al. 2020, "Longformer: The
 * Long-Document Transformer", https://arxiv.org/abs/2004.05150 (and the
 * window-only baseline StreamingLLM, https://arxiv.org/abs/2309.17453,
 * shows failing once the first tokens are gone). StreamingLlmPress with no
 * sinks.
 *
 * Kernel: shaders/kv_score_position.wgsl (one dispatch; reads no KV).
 */
export class SlidingWindowPress implements Press {
  readonly name = 'sliding-window';
  readonly needsQueries = false;

  encodeScores(ctx: ScoreContext): void {
    encodeKvScorePosition(ctx.rec, { out: ctx.out, numKvHeads: ctx.numKvHeads, numTokens: ctx.numTokens, sinks: 0, keepScore: KEEP_SCORE });
  }
}
