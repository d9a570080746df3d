import { type Press, PressScratch, type ScoreContext } from './press.ts';
import { encodeWindowAttention } from './window-attention.ts';

/**
 * TOVA (Token Omission Via Attention): keep the keys the newest token
 * attends to most.
 *
 *   score[g, j] = mean over the group's heads h of softmax_j(q_{N-1,h} · k_j / √d)
 *
 * with q_{N-1} the last row of the window (the last prompt token). Oren et
 * al. 2024, "Transformers are Multi-State RNNs",
 * https://arxiv.org/abs/2401.06104. The paper averages over all heads of
 * the layer and keeps one set of tokens per layer; here, like the other
 * presses, each kv head keeps its own set, averaged over its query group
 * (what kvpress TOVAPress does with GQA once scores are repeated per head).
 *
 * Kernel: shaders/kv_score_attention.wgsl, mode 'last' (three dispatches).
 */
export class TovaPress implements Press {
  readonly name = 'tova';
  readonly needsQueries = true;
  private readonly scratch = new PressScratch('tova');

  encodeScores(ctx: ScoreContext): void {
    encodeWindowAttention(this.name, ctx, this.scratch, { mode: 'last', poolKernel: 1, keepWindow: false });
  }

  destroy(): void {
    this.scratch.destroy();
  }
}
