import { encodeKvScoreAttention, type KvAttentionScoreMode, kvScoreAttentionScratchBytes } from '../../gpu/kernels/kv-score.ts';
import { KEEP_SCORE, type PressScratch, type ScoreContext, windowArgs } from './press.ts';

/** How an attention-based press reads the window's attention (see shaders/kv_score_attention.wgsl). */
export interface WindowAttentionRule {
  mode: KvAttentionScoreMode;
  /** Max-pool width over keys (odd; 1 = none). */
  poolKernel: number;
  /** Give the window's own keys KEEP_SCORE (and leave them out of the pooling). */
  keepWindow: boolean;
}

/** Shared by SnapKV, TOVA and observed attention: the three-pass attention scoring kernel over the press's scratch. */
export function encodeWindowAttention(press: string, ctx: ScoreContext, scratch: PressScratch, rule: WindowAttentionRule): void {
  const a = windowArgs(press, ctx);
  const bytes = kvScoreAttentionScratchBytes(a.window, a.numHeads, a.numKvHeads, a.numTokens);
  encodeKvScoreAttention(ctx.rec, {
    ...a,
    scratch: scratch.get(ctx.rec.gpu, bytes),
    mode: rule.mode,
    poolKernel: rule.poolKernel,
    keepFrom: rule.keepWindow ? a.numTokens - a.window : a.numTokens,
    keepScore: KEEP_SCORE,
  });
}
