/**
 * The engine's real Scheduler on a virtual clock: requests arrive at their
 * times, each step's plan is costed by a step-time model (step-cost.ts) and
 * the clock advances by that much; a fake executor samples one token per
 * sampling row, and Scheduler.update applies it as in the engine. The KV
 * bookkeeping is a simulated pool (KVCacheManager.simulated), so admission,
 * chunked prefill, batching and preemption are the engine's own.
 *
 *   baseline   one request at a time to completion, in arrival order
 *   scheduler  every request handed to the scheduler at its arrival
 */
import { KVCacheManager } from '../../src/kv/kv-cache-manager.ts';
import { Request } from '../../src/scheduler/request.ts';
import { Scheduler, type SchedulerConfig } from '../../src/scheduler/scheduler.ts';
import { isEmpty, type StepOutcome, type StepPlan } from '../../src/scheduler/step-plan.ts';
import type { StepShape } from './step-cost.ts';

export interface SimRequest {
  promptTokens: number;
  /** Images in the prompt (their encoder runs in the step that starts its prefill). */
  images: number;
  maxTokens: number;
  arrivalMs: number;
}

export interface SimResult {
  ttftMs: number[];
  wallMs: number;
  tokens: number;
  steps: number;
  meanDecodeRows: number;
  peakPages: number;
}

export interface SimOptions {
  pages: number;
  pageSize: number;
  scheduler?: Partial<SchedulerConfig>;
}

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/** The shape a plan has for the cost model; `encoded` tracks requests whose images were encoded (a recompute re-encodes nothing). */
export function planShape(plan: StepPlan, images: Map<Request, number>, encoded: Set<Request>): StepShape {
  let n = 0;
  for (const c of plan.prefill) {
    if (c.start === 0 && !encoded.has(c.request)) {
      encoded.add(c.request);
      n += images.get(c.request) ?? 0;
    }
  }
  return { decodeContexts: plan.decode.map((r) => r.numTokens), prefill: plan.prefill.map((c) => ({ start: c.start, count: c.count, samples: c.samples })), images: n };
}

export function simulate(system: 'baseline' | 'scheduler', reqs: SimRequest[], cost: (s: StepShape) => number, o: SimOptions): SimResult {
  const kv = KVCacheManager.simulated(o.pages, o.pageSize);
  const sched = new Scheduler(kv, o.scheduler ?? {});
  const images = new Map<Request, number>();
  const encoded = new Set<Request>();
  const first = new Map<Request, number>();
  const order: Request[] = [];
  let t = 0, next = 0, steps = 0, decodeRows = 0, tokens = 0, peakPages = 0;
  const admit = (k: number) => {
    const q = reqs[k];
    // distinct ids per request: no two share a prefix, so the prefix cache plays no part
    const prompt = Array.from({ length: q.promptTokens }, (_, i) => 3 + ((k * 7919 + i * 31) % 400));
    const r = new Request(`sim-${k}`, prompt, { maxNewTokens: q.maxTokens, sampling: GREEDY }, k);
    images.set(r, q.images);
    order.push(r);
    sched.add(r);
  };
  while (order.length < reqs.length || sched.hasWork()) {
    if (system === 'baseline') {
      if (!sched.hasWork() && next < reqs.length) {
        t = Math.max(t, reqs[next].arrivalMs);
        admit(next++);
      }
    } else {
      while (next < reqs.length && reqs[next].arrivalMs <= t) admit(next++);
      if (!sched.hasWork()) {
        t = reqs[next].arrivalMs;
        continue;
      }
    }
    const plan = sched.schedule();
    if (isEmpty(plan)) throw new Error(`simulate: the scheduler planned nothing with work left (${sched.debugString()})`);
    t += cost(planShape(plan, images, encoded));
    steps++;
    decodeRows += plan.decode.length;
    peakPages = Math.max(peakPages, kv.numTotalPages - kv.numFreePages);
    const sampledBy = [...plan.decode, ...plan.prefill.filter((c) => c.samples).map((c) => c.request)];
    const outcome: StepOutcome = { sampled: sampledBy.map((request) => ({ request, token: 5 })), compressed: [] };
    sched.update(plan, outcome);
    tokens += sampledBy.length;
    for (const r of sampledBy) if (!first.has(r)) first.set(r, t);
  }
  const ttftMs = order.map((r, k) => first.get(r)! - reqs[k].arrivalMs);
  return { ttftMs, wallMs: t - reqs[0].arrivalMs, tokens, steps, meanDecodeRows: decodeRows / steps, peakPages };
}

/** Arrival times of `n` requests at `rate` per second, evenly spaced (FastCache's harness). */
export function evenArrivals(n: number, rate: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 1000) / rate);
}

/** Linear-interpolated percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = ((s.length - 1) * p) / 100, lo = Math.floor(k), hi = Math.ceil(k);
  return s[lo] + (s[hi] - s[lo]) * (k - lo);
}
