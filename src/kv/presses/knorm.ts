import { encodeKvScoreKnorm } from '../../gpu/kernels/kv-score.ts';
import { type Press, type ScoreContext, seqArgs } from './press.ts';

/**
 * Knorm: keep the keys with the lowest L2 norm.
 *
 *   score[g, j] = -‖K[j, g, :]‖₂
 *
 * Devoto et al. 2024, "A Simple and Effective L2 Norm-Based Strategy for KV
 * Cache Compression", https://arxiv.org/abs/2406.11430 — low-norm keys draw
 * high attention, so they are the ones to keep. (kvpress KnormPress.)
 * Needs no queries: it can score a cache with no prompt pass at hand.
 *
 * Kernel: shaders/kv_score_knorm.wgsl (one dispatch).
 */
export class KnormPress implements Press {
  readonly name = 'knorm';
  readonly needsQueries = false;

  encodeScores(ctx: ScoreContext): void {
    encodeKvScoreKnorm(ctx.rec, seqArgs(ctx));
  }
}
