/**
 * How a preempted request gives its pages back (vLLM's recompute vs swap):
 *
 *   'recompute'  free the pages; prefill the request's tokens again later
 *   'offload'    swap its pages out to the CPU tier and back in when it resumes
 *                (recompute when the tier is off or full — nothing is lost)
 *   'auto'       whichever costs less for this request: its computed tokens
 *                through prefill, or its pages' bytes out and back in, at the
 *                rates measured on this adapter (PreemptionCosts)
 */
export type PreemptionMode = 'recompute' | 'offload' | 'auto';

export const PREEMPTION_MODES: readonly PreemptionMode[] = ['recompute', 'offload', 'auto'];

/** The two costs 'auto' compares, in milliseconds. */
export interface PreemptionCosts {
  recomputeMs(tokens: number): number;
  /** Bytes moved one way (a swap moves them out and back). */
  moveMs(bytes: number): number;
}

/**
 * Costs from what the engine has measured: prefill time per token from its
 * steps, transfer time per byte from its page downloads; until a rate is
 * observed, a guess (1 ms per prefill token, 1 GB/s) that the first
 * measurements replace.
 */
export class MeasuredCosts implements PreemptionCosts {
  private msPerToken = 1;
  private msPerByte = 1e-6;
  private tokensSeen = 0;

  /** A step ran `tokens` prefill rows (and others) in `ms`. */
  observeStep(tokens: number, ms: number): void {
    if (tokens <= 0 || !(ms > 0)) return;
    const w = Math.min(0.5, tokens / (this.tokensSeen + tokens));
    this.msPerToken += w * (ms / tokens - this.msPerToken);
    this.tokensSeen += tokens;
  }

  /** Transfers so far moved `bytes` in `ms`. */
  observeTransfer(bytes: number, ms: number): void {
    if (bytes > 0 && ms > 0) this.msPerByte = ms / bytes;
  }

  recomputeMs(tokens: number): number {
    return tokens * this.msPerToken;
  }

  moveMs(bytes: number): number {
    return bytes * this.msPerByte;
  }
}

export function checkPreemptionMode(mode: unknown): PreemptionMode {
  if (!PREEMPTION_MODES.includes(mode as PreemptionMode)) {
    throw new RangeError(`preemption must be one of ${PREEMPTION_MODES.map((m) => `'${m}'`).join(', ')}, got ${JSON.stringify(mode)}`);
  }
  return mode as PreemptionMode;
}
