import type { Request } from './request.ts';

/**
 * The one object the scheduler hands the engine each step (vLLM's
 * SchedulerOutput). Every KV slot it names is already allocated.
 */
export interface PrefillChunk {
  request: Request;
  start: number; //  first token of the chunk
  count: number;
  /** The chunk reaches the end of the request's tokens, so its last row samples. */
  samples: boolean;
}

export interface StepPlan {
  /** Running requests that feed their last token and sample one (one row each). */
  decode: Request[];
  prefill: PrefillChunk[];
  /** Requests whose prompt just finished, to go through the compress stage. */
  compress: Request[];
  /** Requests whose pages were taken back this step; they wait to be recomputed. */
  preempted: Request[];
}

export function planRows(plan: StepPlan): number {
  return plan.decode.length + plan.prefill.reduce((n, c) => n + c.count, 0);
}

export function isEmpty(plan: StepPlan): boolean {
  return plan.decode.length === 0 && plan.prefill.length === 0 && plan.compress.length === 0;
}
