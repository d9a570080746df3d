/**
 * The continuous-batching scheduler without a GPU: a KVCacheManager over a
 * simulated pool, and a fake step executor that returns what the engine's
 * executor returns (sampled ids, compactions) — the scheduler's own
 * `update` applies it, exactly as in the engine. Every plan is checked
 * against the limits and the KV bookkeeping before it is executed, and the
 * scheduler's invariants after. Used by src/scheduler/*.test.ts.
 */
import { expect } from 'vitest';
import { KVCacheManager } from '../src/kv/kv-cache-manager.ts';
import { Request, type CompressionSpec } from '../src/scheduler/request.ts';
import { Scheduler, type SchedulerConfig } from '../src/scheduler/scheduler.ts';
import { CpuTier } from '../src/kv/tiers/cpu-tier.ts';
import { isEmpty, type StepOutcome, type StepPlan } from '../src/scheduler/step-plan.ts';

/** Rows a plan runs through the model: one per decode request, every prefill chunk's tokens. */
function planRows(plan: StepPlan): number {
  return plan.decode.length + plan.prefill.reduce((n, c) => n + c.count, 0);
}

export const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/** The k-th output token of a request: a function of (id, k), so a recomputed request must reproduce it. */
export function tokenFor(id: string, k: number): number {
  let h = 2166136261;
  for (const ch of id) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return ((h >>> 0) + 7919 * k) % 500;
}

export function promptOf(id: string, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (tokenFor(id, 1000 + i) % 400) + 3);
}

export interface AddOptions {
  arrival?: number;
  compression?: CompressionSpec;
  /** The prompt's first tokens, when requests should share a prefix. */
  prefix?: number[];
}

/**
 * A scheduler, its simulated pool, and a fake executor. `tick()` schedules one
 * step, checks the plan, executes it — the fake executor only produces a
 * StepOutcome (sampled ids; for the compress stage it compacts the KV
 * bookkeeping as a press would) and `Scheduler.update` applies it, as in the
 * engine. The plans are kept for the assertions of each test.
 */
export class Harness {
  readonly kv: KVCacheManager;
  readonly sched: Scheduler;
  readonly requests: Request[] = [];
  readonly plans: StepPlan[] = [];
  /** Per request: tokens evicted by each run of its compress stage (a recomputed request must evict the same). */
  readonly evictions = new Map<Request, number[]>();
  step = 0;

  /** `offload`: a CPU tier of that many bytes (64 per page) and preemption by swap-out. */
  constructor(numPages: number, pageSize: number, config: Partial<SchedulerConfig> = {}, prefixCache = false, offload = 0) {
    this.kv = KVCacheManager.simulated(numPages, pageSize, prefixCache, offload ? { tier: new CpuTier(offload), pageBytes: 64 } : null);
    this.sched = new Scheduler(this.kv, config, { mode: offload ? 'offload' : 'recompute' });
  }

  get config(): SchedulerConfig {
    return this.sched.config;
  }

  add(id: string, promptLen: number, maxNew: number, o: AddOptions | number = {}): Request {
    const opts = typeof o === 'number' ? { arrival: o } : o;
    const prompt = [...(opts.prefix ?? []), ...promptOf(id, promptLen - (opts.prefix?.length ?? 0))];
    const r = new Request(id, prompt, { maxNewTokens: maxNew, sampling: GREEDY, compression: opts.compression ?? null }, opts.arrival ?? this.step);
    this.requests.push(r);
    this.sched.add(r);
    return r;
  }

  /** Live requests: added, not finished nor aborted. */
  live(): Request[] {
    return this.requests.filter((r) => !r.finished);
  }

  /** Schedules, checks and executes one step. `beforeExecute` runs between planning and execution (an abort while the step is in flight). */
  tick(beforeExecute?: (plan: StepPlan) => void): StepPlan {
    const stages = new Map(this.live().filter((r) => !r.swapped).map((r) => [r, r.stage] as const)); // a swapped-out request keeps its counts but waits
    const preemptionsBefore = this.sched.numPreemptions;
    const plan = this.sched.schedule();
    this.plans.push(plan);
    expect(this.sched.numPreemptions - preemptionsBefore).toBe(plan.preempted.length);
    if (this.sched.hasWork()) expect(isEmpty(plan), `empty plan with work left: ${this.sched.debugString()}`).toBe(false);
    this.checkPlan(plan, stages);
    beforeExecute?.(plan);
    this.sched.update(plan, this.execute(plan));
    this.sched.checkInvariants();
    this.step++;
    return plan;
  }

  /** Ticks until no work is left; fails after `maxSteps` (a deadlock or livelock). */
  drain(maxSteps = 10_000): void {
    for (let i = 0; this.sched.hasWork(); i++) {
      if (i >= maxSteps) throw new Error(`no progress after ${maxSteps} steps: ${this.sched.debugString()}`);
      this.tick();
    }
  }

  expectAllPagesFree(): void {
    expect(this.sched.hasWork()).toBe(false);
    expect(this.kv.numSequences).toBe(0);
    expect(this.kv.numPrefixTracked, 'prefix keys kept for released sequences').toBe(0);
    expect(this.kv.numFreePages).toBe(this.kv.numTotalPages);
    this.kv.checkInvariants();
  }

  /** Every request that was not aborted produced exactly its max tokens, in order, across any preemption. */
  expectOutputsComplete(): void {
    for (const r of this.requests) {
      if (r.finishReason === 'abort') continue;
      expect(r.finishReason, r.id).toBe('length');
      expect(r.outputIds, r.id).toEqual(Array.from({ length: r.maxNewTokens }, (_, k) => tokenFor(r.id, k)));
      // every run of the compress stage saw the same prompt and evicted the same tokens
      const ev = this.evictions.get(r) ?? [];
      expect(new Set(ev).size, `${r.id} compressed differently after recompute: ${ev}`).toBeLessThanOrEqual(1);
      if (ev.length) expect(r.evictedTokens).toBe(ev[0]);
    }
  }

  // ---------------------------------------------------------------- checks

  private checkPlan(plan: StepPlan, stageBefore: Map<Request, string>): void {
    const c = this.config;
    const seen = new Set<Request>();
    const once = (r: Request) => {
      expect(seen.has(r), `${r.id} appears twice in one plan`).toBe(false);
      seen.add(r);
    };
    const slots = (r: Request) => this.kv.numTokens(r.id) + this.kv.positionOffset(r.id);
    // limits
    expect(planRows(plan)).toBeLessThanOrEqual(c.maxBatchTokens);
    expect(plan.decode.length + plan.prefill.filter((p) => p.samples).length).toBeLessThanOrEqual(c.maxSampledRows);
    expect(plan.compress.length).toBeLessThanOrEqual(c.maxCompressBatch);
    expect(this.kv.numSequences).toBeLessThanOrEqual(c.maxRunning);
    // each stage holds requests of that stage, with their KV slots allocated exactly
    for (const r of plan.compress) {
      once(r);
      expect(r.stage).toBe('compress');
      // the press sees the prompt and nothing else, on the first run and after any recompute
      expect(this.kv.numTokens(r.id)).toBe(r.promptIds.length);
      expect(r.numComputedTokens).toBe(r.promptIds.length);
    }
    for (const r of plan.decode) {
      once(r);
      expect(r.stage).toBe('decode');
      expect(r.compressionPending, `${r.id} decodes before its compress stage`).toBe(false);
      expect(slots(r)).toBe(r.numTokens);
    }
    for (const p of plan.prefill) {
      once(p.request);
      expect(p.request.stage).toBe('prefill');
      expect(p.start).toBe(p.request.numComputedTokens);
      expect(p.count).toBeGreaterThanOrEqual(1);
      expect(p.count).toBeLessThanOrEqual(c.maxPrefillChunk);
      expect(p.start + p.count).toBeLessThanOrEqual(p.request.prefillEnd);
      expect(p.samples).toBe(p.start + p.count === p.request.numTokens);
      if (p.captureWindow > 0) expect(p.start + p.count).toBe(p.request.promptIds.length);
      if (p.start + p.count === p.request.promptIds.length && p.request.compressionPending) {
        expect(p.captureWindow).toBe(p.request.finalChunkMin); // the whole observation window is in this chunk
      }
      expect(slots(p.request)).toBe(p.start + p.count);
    }
    // preempted requests lost their pages and count from zero (unless re-admitted in this same plan)
    for (const r of plan.preempted) {
      if (r.swapped) { // swapped out: it keeps its counts, the KV manager keeps a copy, the pool none
        expect(this.kv.isSwapped(r.id)).toBe(true);
        expect(this.kv.has(r.id)).toBe(false);
        continue;
      }
      expect(r.numComputedTokens).toBe(0);
      expect(plan.decode.includes(r) || plan.compress.includes(r)).toBe(false);
      if (this.kv.has(r.id)) expect(plan.prefill.some((p) => p.request === r && p.start === 0)).toBe(true);
    }
    // no allocated-but-unplanned slots, and only live requests hold pages
    for (const id of this.kv.sequenceIds()) {
      const r = this.requests.find((x) => x.id === id);
      expect(r && !r.finished, `pages held by ${String(id)}, which is not live`).toBe(true);
      if (!seen.has(r!)) expect(slots(r!)).toBe(r!.numComputedTokens);
    }
    this.kv.checkInvariants();
    // no decode stall: every request that was decoding runs, unless the sampled-row (or row) cap is reached
    const decoding = [...stageBefore].filter(([r, s]) => s === 'decode' && !plan.preempted.includes(r)).map(([r]) => r);
    const cap = Math.min(c.maxSampledRows, c.maxBatchTokens);
    if (plan.decode.length < cap) for (const r of decoding) expect(plan.decode.includes(r), `${r.id} stalled`).toBe(true);
  }

  // ---------------------------------------------------------------- the fake executor

  /** What the engine's executor reports: the k-th sampled id of each sampling row, and the compactions a press made. */
  private execute(plan: StepPlan): StepOutcome {
    const outcome: StepOutcome = { sampled: [], compressed: [] };
    // the tiers' copies, as the engine's executor makes them first thing (contents are not simulated)
    for (const d of this.kv.drainTransfers().downloads) d.done(new ArrayBuffer(64));
    for (const r of plan.compress) {
      const n = this.kv.numTokens(r.id);
      const evict = Math.floor(n * r.compression!.ratio);
      if (evict === 0 || evict >= n) continue;
      const freed = this.kv.compact(r.id, n - evict);
      this.evictions.set(r, [...(this.evictions.get(r) ?? []), evict]);
      outcome.compressed.push({ request: r, evictedTokens: evict, freedPages: freed });
    }
    const rows = [...plan.decode, ...plan.prefill.filter((p) => p.samples).map((p) => p.request)];
    for (const r of rows) outcome.sampled.push({ request: r, token: tokenFor(r.id, r.outputIds.length) });
    return outcome;
  }
}


export const PRESS: CompressionSpec = { press: 'knorm', ratio: 0.5, window: 0 };
