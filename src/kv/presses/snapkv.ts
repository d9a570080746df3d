import { type Press, PressScratch, type ScoreContext } from './press.ts';
import { encodeWindowAttention } from './window-attention.ts';

export interface SnapKvOptions {
  /** Max-pool width over neighbouring keys (odd, default 5). */
  kernelSize?: number;
}

/**
 * SnapKV: the observation window (the last W prompt tokens) votes for the
 * keys it attends to; neighbours of a chosen key come along (pooling).
 *
 *   a_ihj     = softmax_j(q_ih · k_j / √d),  causal: query i at position N-W+i sees j ≤ N-W+i
 *   raw[g, j] = mean over the group's heads h and the W window queries i of a_ihj
 *   score[g, j] = max_{|j'-j| ≤ kernelSize/2, j' < N-W} raw[g, j']   for j < N - W
 *               = KEEP_SCORE                                          for the window's own keys
 *
 * Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before
 * Generation", https://arxiv.org/abs/2404.14469 (max pooling, kernel 5, as
 * the paper; kvpress SnapKVPress averages instead and pads the window with
 * the max score).
 *
 * Kernel: shaders/kv_score_attention.wgsl, mode 'mean' (three dispatches).
 */
export class SnapKvPress implements Press {
  readonly name = 'snapkv';
  readonly needsQueries = true;
  readonly kernelSize: number;
  private readonly scratch = new PressScratch('snapkv');

  constructor(options: SnapKvOptions = {}) {
    this.kernelSize = options.kernelSize ?? 5;
    if (!Number.isInteger(this.kernelSize) || this.kernelSize < 1 || this.kernelSize % 2 === 0) {
      throw new RangeError(`press 'snapkv': kernelSize must be a positive odd integer, got ${this.kernelSize}`);
    }
  }

  encodeScores(ctx: ScoreContext): void {
    encodeWindowAttention(this.name, ctx, this.scratch, { mode: 'mean', poolKernel: this.kernelSize, keepWindow: true });
  }

  destroy(): void {
    this.scratch.destroy();
  }
}
