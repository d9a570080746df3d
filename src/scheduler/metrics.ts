import type { EngineStats, RequestMetrics } from '../api/stats.ts';
import type { Request } from './request.ts';
import type { StepPlan } from './step-plan.ts';

export function requestMetrics(r: Request): RequestMetrics {
  const t = r.times;
  const end = t.finished ?? performance.now();
  const first = t.firstToken ?? end;
  const n = r.outputIds.length;
  return {
    queueDelayMs: (t.firstScheduled ?? end) - t.arrival,
    ttftMs: first - t.arrival,
    prefillTtftMs: (t.prefillDone ?? first) - t.arrival,
    tpotMs: n > 1 ? (end - first) / (n - 1) : 0,
    e2eMs: end - t.arrival,
    promptTokens: r.promptIds.length,
    completionTokens: n,
    preemptions: r.numPreemptions,
    evictedTokens: r.evictedTokens,
    prefixHitTokens: r.prefixHitTokens,
    prefixFrom: prefixFrom(r),
  };
}

/** The prefix hit by tier. A compressed prefix counts its whole span; its slots came up from the CPU tier in proportion. */
function prefixFrom(r: Request): NonNullable<RequestMetrics['prefixFrom']> {
  const slots = r.prefixHitTokens - r.evictedTokens * (r.compression?.prefix ? 1 : 0);
  const cpu = slots > 0 ? Math.round((r.prefixHitTokens * r.prefixCpuSlots) / slots) : 0;
  const stored = Math.min(cpu, r.restoredTokens);
  return { gpu: r.prefixHitTokens - cpu, cpu: cpu - stored, stored };
}

/** Accumulates per-step counts for EngineStats. */
export class StepCounters {
  steps = 0;
  prefillTokens = 0;
  decodeRows = 0;
  compressed = 0;
  generated = 0;
  finished = 0;
  aborted = 0;
  firstWorkAt: number | null = null;
  lastStepAt = 0;

  record(plan: StepPlan, sampled: number): void {
    const now = performance.now();
    this.firstWorkAt ??= now;
    this.lastStepAt = now;
    this.steps++;
    this.prefillTokens += plan.prefill.reduce((n, c) => n + c.count, 0);
    this.decodeRows += plan.decode.length;
    this.compressed += plan.compress.length;
    this.generated += sampled;
  }

  throughput(): number {
    if (this.firstWorkAt === null || this.lastStepAt <= this.firstWorkAt) return 0;
    return (this.generated * 1000) / (this.lastStepAt - this.firstWorkAt);
  }

  /** Restarts the throughput clock (benchmarks measure one phase at a time). */
  resetClock(): void {
    this.firstWorkAt = null;
    this.generated = 0;
  }
}

export type { EngineStats, RequestMetrics };
