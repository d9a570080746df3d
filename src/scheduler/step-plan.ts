import type { Request } from './request.ts';

/**
 * The two objects that cross between the scheduler and the executor each
 * step (vLLM's SchedulerOutput and ModelRunnerOutput): the scheduler hands
 * out a StepPlan — every KV slot it names is already allocated — and gets
 * back a StepOutcome, which it alone applies to request state
 * (`Scheduler.update`).
 */
export interface PrefillChunk {
  request: Request;
  start: number; //  first token of the chunk
  count: number;
  /** The chunk reaches the end of the request's tokens, so its last row samples. */
  samples: boolean;
  /** Rows at the chunk's end whose q|k|v the compress stage scores with (the press's observation window), 0 for none. */
  captureWindow: number;
}

export interface StepPlan {
  /** Running requests that feed their last token and sample one (one row each). */
  decode: Request[];
  prefill: PrefillChunk[];
  /** Requests whose prompt is complete, to go through the compress stage (before this step's forward). */
  compress: Request[];
  /** Requests whose pages were taken back this step; they wait to be recomputed. */
  preempted: Request[];
}

/** What the executor did with a plan. It writes no request state. */
export interface StepOutcome {
  /** One per sampling row, in plan row order (decode rows, then sampling prefill chunks). */
  sampled: { request: Request; token: number; logits?: Float32Array }[];
  /** Requests a press compressed in this step's compress stage. */
  compressed: { request: Request; evictedTokens: number; freedPages: number }[];
}

export function isEmpty(plan: StepPlan): boolean {
  return plan.decode.length === 0 && plan.prefill.length === 0 && plan.compress.length === 0;
}
