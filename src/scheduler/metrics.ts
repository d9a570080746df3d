import type { Request } from './request.ts';
import type { StepPlan } from './step-plan.ts';

/** Per-request figures, in milliseconds, derived from a request's timestamps. */
export interface RequestMetrics {
  queueDelayMs: number; //     arrival → first step that ran its tokens
  ttftMs: number; //           arrival → first token handed to the caller
  prefillTtftMs: number; //    arrival → end of its prefill (FastCache's harness stops here)
  tpotMs: number; //           mean time per output token after the first
  e2eMs: number; //            arrival → finished
  promptTokens: number;
  completionTokens: number;
  preemptions: number;
}

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
  };
}

export interface EngineStats {
  steps: number;
  requestsFinished: number;
  requestsAborted: number;
  requestsRunning: number;
  requestsWaiting: number;
  promptTokens: number; //       tokens run through prefill (incl. recomputation)
  generatedTokens: number;
  /** Output tokens per second since the engine first had work. */
  throughputTokPerS: number;
  meanBatch: { prefillTokens: number; decodeRows: number; compress: number };
  preemptions: number;
  pool: { pagesTotal: number; pagesInUse: number; peakPagesInUse: number; pageSize: number };
  gpuBytes: number;
  gpuPeakBytes: number;
  /** The compress stage so far: requests compressed, tokens evicted, pages freed, time spent. */
  compression: { requests: number; evictedTokens: number; freedPages: number; ms: number };
  /** Images: vision-encoder runs (calls) and images served from the feature cache instead. */
  vision: { encoderCalls: number; imagesEncoded: number; featureCacheHits: number };
  /** Prefix cache: prompt tokens whose KV was reused instead of prefilled. */
  prefixCache: { lookups: number; hitRequests: number; hitTokens: number; cachedPages: number };
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
