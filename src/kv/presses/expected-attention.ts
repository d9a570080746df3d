import { encodeKvScoreExpected, kvScoreExpectedScratchBytes } from '../../gpu/kernels/kv-score.ts';
import { KEEP_SCORE, type Press, PressScratch, type ScoreContext, windowArgs } from './press.ts';

export interface ExpectedAttentionOptions {
  /** Attention-sink tokens always kept (default 4, as kvpress). */
  sinks?: number;
}

/**
 * Expected attention: score each key by the attention that *future* queries
 * are expected to pay it, modelling them as Gaussian from the window's
 * queries, and weight by the value's norm.
 *
 *   μ_h, σ²_h = per-dimension mean and variance of the window's queries of head h
 *   For q ~ N(μ, Σ):  E[exp(q·k/√d)] = exp(μ·k/√d + kᵀΣk / 2d)
 *   e_hj      = μ_h·k_j/√d + Σ_d σ²_hd k_jd² / 2d       (Σ taken diagonal)
 *   score[g, j] = ‖v_j‖ · mean over the group's heads h of softmax_j(e_hj),
 *   and KEEP_SCORE for the first `sinks` tokens.
 *
 * kvpress ExpectedAttentionPress (Devoto et al. 2025, "Expected Attention:
 * KV Cache Compression by Estimating Attention from Future Queries
 * Distribution", https://arxiv.org/abs/2510.00636). Approximations here:
 *  - the covariance is diagonal (kvpress uses the full d×d matrix);
 *  - the statistics are of the window's queries *after* RoPE, at their own
 *    positions; kvpress takes pre-RoPE queries and rotates the mean and
 *    covariance by RoPE averaged over the next 512 positions. Kernels know
 *    no model (rope theta), so future rotation is left out: good for the
 *    near future, drifts for far-off queries on high-frequency dimensions.
 *
 * Kernel: shaders/kv_score_expected.wgsl (four dispatches).
 */
export class ExpectedAttentionPress implements Press {
  readonly name = 'expected-attention';
  readonly needsQueries = true;
  readonly sinks: number;
  private readonly scratch = new PressScratch('expected-attention');

  constructor(options: ExpectedAttentionOptions = {}) {
    this.sinks = options.sinks ?? 4;
    if (!Number.isInteger(this.sinks) || this.sinks < 0) throw new RangeError(`press 'expected-attention': sinks must be a non-negative integer, got ${this.sinks}`);
  }

  encodeScores(ctx: ScoreContext): void {
    const a = windowArgs(this.name, ctx);
    const scratch = this.scratch.get(ctx.rec.gpu, kvScoreExpectedScratchBytes(a.numHeads, a.headDim, a.numTokens));
    encodeKvScoreExpected(ctx.rec, { ...a, scratch, sinks: this.sinks, keepScore: KEEP_SCORE });
  }

  destroy(): void {
    this.scratch.destroy();
  }
}
