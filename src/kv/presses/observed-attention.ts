import { type Press, PressScratch, type ScoreContext } from './press.ts';
import { encodeWindowAttention } from './window-attention.ts';

/**
 * Observed attention (H2O, "heavy hitters"): keep the keys that have
 * accumulated the most attention.
 *
 *   score[g, j] = (1/group) Σ_{h in group g} Σ_{window queries i, pos_i ≥ j} softmax_j(q_ih · k_j / √d)
 *
 * Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for Efficient Generative
 * Inference of Large Language Models", https://arxiv.org/abs/2306.14048.
 * H2O accumulates over every query seen so far; here over the queries the
 * caller hands in (the observation window; pass the whole prompt's queries
 * for the full H2O sum). The plain sum favours early keys, which more
 * queries see; kvpress ObservedAttentionPress divides by that count instead.
 *
 * Kernel: shaders/kv_score_attention.wgsl, mode 'sum' (three dispatches).
 */
export class ObservedAttentionPress implements Press {
  readonly name = 'observed-attention';
  readonly needsQueries = true;
  private readonly scratch = new PressScratch('observed-attention');

  encodeScores(ctx: ScoreContext): void {
    encodeWindowAttention(this.name, ctx, this.scratch, { mode: 'sum', poolKernel: 1, keepWindow: false });
  }

  destroy(): void {
    this.scratch.destroy();
  }
}
