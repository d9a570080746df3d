/**
 * The continuous-batching scheduler without a GPU: a KVCacheManager over a
 * simulated pool, and a fake step executor that returns what the engine's
 * executor returns (sampled ids, compactions) — the scheduler's own
 * `update` applies it, exactly as in the engine. Every plan is checked
 * against the limits and the KV bookkeeping before it is executed, and the
 * scheduler's invariants after.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../../test/gpu.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { Request } from './request.ts';
import { Scheduler, type SchedulerConfig } from './scheduler.ts';
import { isEmpty, planRows, type StepOutcome, type StepPlan } from './step-plan.ts';
import type { CompressionSpec } from './request.ts';

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/** The k-th output token of a request: a function of (id, k), so a recomputed request must reproduce it. */
function tokenFor(id: string, k: number): number {
  let h = 2166136261;
  for (const ch of id) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return ((h >>> 0) + 7919 * k) % 500;
}

function promptOf(id: string, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (tokenFor(id, 1000 + i) % 400) + 3);
}

interface AddOptions {
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
class Harness {
  readonly kv: KVCacheManager;
  readonly sched: Scheduler;
  readonly requests: Request[] = [];
  readonly plans: StepPlan[] = [];
  /** Per request: tokens evicted by each run of its compress stage (a recomputed request must evict the same). */
  readonly evictions = new Map<Request, number[]>();
  step = 0;

  constructor(numPages: number, pageSize: number, config: Partial<SchedulerConfig> = {}, prefixCache = false) {
    this.kv = KVCacheManager.simulated(numPages, pageSize, prefixCache);
    this.sched = new Scheduler(this.kv, config);
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
    const stages = new Map(this.live().map((r) => [r, r.stage] as const));
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

const PRESS: CompressionSpec = { press: 'knorm', ratio: 0.5, window: 0 };

describe('Request: the stage is derived from counts', () => {
  it('prefill → compress → decode with a press; prefill → decode without', () => {
    const r = new Request('a', [5, 6, 7, 8], { maxNewTokens: 10, sampling: GREEDY, compression: PRESS }, 0);
    expect([r.stage, r.numTokens, r.prefillEnd]).toEqual(['prefill', 4, 4]);
    r.numComputedTokens = 3; // a chunk that stopped one short of the prompt's end: nothing sampled yet
    expect(r.stage).toBe('prefill');
    r.numComputedTokens = 4;
    r.outputIds.push(9);
    expect([r.stage, r.numTokens]).toEqual(['compress', 5]);
    r.compressed = true;
    expect([r.stage, r.prefillEnd]).toEqual(['decode', 5]);
    r.numComputedTokens = 5; // a decode step feeds token 4 and samples token 5
    r.outputIds.push(10);
    expect(r.stage).toBe('decode');
    expect(r.tokens(2, 4)).toEqual([7, 8, 9, 10]);
    const plain = new Request('b', [5, 6], { maxNewTokens: 3, sampling: GREEDY }, 0);
    plain.numComputedTokens = 2;
    plain.outputIds.push(1);
    expect(plain.stage).toBe('decode'); // no press: no compress stage
  });

  it('a preempted compressed request recomputes its prompt, is compressed again, then recomputes its outputs', () => {
    const r = new Request('a', [5, 6, 7, 8], { maxNewTokens: 10, sampling: GREEDY, compression: PRESS }, 0);
    r.outputIds.push(9, 10, 11); // three tokens were generated before the preemption
    expect([r.stage, r.prefillEnd]).toEqual(['prefill', 4]); // the prompt only: no sampling at its end
    r.numComputedTokens = 4;
    expect(r.stage).toBe('compress');
    r.compressed = true;
    expect([r.stage, r.prefillEnd]).toEqual(['prefill', 7]); // outputs 9 10 11 over the compressed cache
    r.numComputedTokens = 7;
    expect(r.stage).toBe('decode');
  });

  it('each request in a run goes prefill+, compress once (with a press), then decode+', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 8, maxPrefillChunk: 4 });
    const rs = [h.add('a', 9, 5, { compression: PRESS }), h.add('b', 3, 4, { compression: PRESS }), h.add('c', 1, 3, { compression: PRESS }), h.add('d', 3, 3)];
    const history = new Map(rs.map((r) => [r, [] as string[]]));
    while (h.sched.hasWork()) {
      const plan = h.tick();
      for (const r of plan.compress) history.get(r)!.push('C');
      for (const r of plan.decode) history.get(r)!.push('D');
      for (const p of plan.prefill) history.get(p.request)!.push(p.samples ? 'P!' : 'P');
    }
    const compact = (r: Request) => history.get(r)!.join(' ');
    expect(compact(rs[0])).toBe('P P P! C D D D D'); // 9 tokens in chunks of 4; the 3rd chunk samples
    expect(compact(rs[1])).toBe('P! C D D D');
    expect(compact(rs[2])).toBe('P! C D D');
    expect(compact(rs[3])).toBe('P! D D');
    expect(h.evictions.get(rs[0])).toEqual([4]);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: batch forming', () => {
  it('splits a long prompt into chunks of at most maxPrefillChunk while decodes run every step', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 16, maxPrefillChunk: 8, maxSampledRows: 4 });
    const short = [h.add('s1', 2, 40), h.add('s2', 3, 40), h.add('s3', 1, 40)];
    while (!short.every((r) => r.stage === 'decode')) h.tick();
    const long = h.add('long', 100, 3);
    const chunks: [number, number][] = [];
    while (long.outputIds.length === 0) {
      const plan = h.tick();
      expect(plan.decode).toEqual(short); // no decode stall, oldest first
      for (const p of plan.prefill) chunks.push([p.start, p.count]);
    }
    expect(chunks).toEqual(Array.from({ length: 13 }, (_, i) => [8 * i, i < 12 ? 8 : 4]));
    h.drain();
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('gives decode rows the budget first; prefill gets what is left', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 8, maxPrefillChunk: 8, maxSampledRows: 8 });
    const decoders = Array.from({ length: 6 }, (_, i) => h.add(`d${i}`, 1, 30));
    while (!decoders.every((r) => r.stage === 'decode')) h.tick();
    const p = h.add('p', 20, 2);
    for (let i = 0; i < 4; i++) {
      const plan = h.tick();
      expect(plan.decode.length).toBe(6);
      expect(plan.prefill.map((c) => [c.request.id, c.count])).toEqual([['p', 2]]);
    }
    expect(p.numComputedTokens).toBe(8);
    h.drain();
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('samples at most maxSampledRows sequences a step; a prompt with no sampling room stops one token short', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 32, maxPrefillChunk: 16, maxSampledRows: 4 });
    const decoders = Array.from({ length: 6 }, (_, i) => h.add(`d${i}`, 1, 20));
    for (let i = 0; i < 8; i++) h.tick();
    for (let i = 0; i < 5; i++) expect(h.tick().decode).toEqual(decoders.slice(0, 4)); // d4, d5 wait for sampling room
    // decode rows go first: 1-token prompts (nothing to prefill short of the sampling row) wait for a free sampling row
    expect(decoders.slice(4).map((r) => r.outputIds.length)).toEqual([0, 0]);
    h.drain();
    const h2 = new Harness(64, 4, { maxBatchTokens: 32, maxPrefillChunk: 16, maxSampledRows: 4 });
    const rows = Array.from({ length: 4 }, (_, i) => h2.add(`d${i}`, 1, 20));
    for (let i = 0; i < 4; i++) h2.tick();
    const p = h2.add('p', 5, 2);
    const plan = h2.tick();
    expect(plan.decode).toEqual(rows);
    expect(plan.prefill.map((c) => [c.request.id, c.count, c.samples])).toEqual([['p', 4, false]]);
    h2.drain();
    h2.expectOutputsComplete();
    h2.expectAllPagesFree();
    expect(p.outputIds.length).toBe(2);
    expect(decoders.every((r) => r.outputIds.length === 20)).toBe(true);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('never plans more rows than maxBatchTokens, even when maxSampledRows is larger', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 8, maxPrefillChunk: 8, maxSampledRows: 16, maxRunning: 16 });
    for (let i = 0; i < 12; i++) h.add(`r${i}`, 1, 12);
    h.drain(); // checkPlan asserts planRows <= maxBatchTokens every step
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('keeps at most maxRunning requests with pages and compresses at most maxCompressBatch a step', () => {
    const h = new Harness(64, 4, { maxBatchTokens: 32, maxPrefillChunk: 8, maxRunning: 3, maxCompressBatch: 2 });
    for (let i = 0; i < 7; i++) h.add(`r${i}`, 2, 4, { compression: PRESS });
    const first = h.tick();
    expect(first.prefill.length).toBe(3);
    expect(h.sched.numRunning).toBe(3);
    expect(h.sched.numWaiting).toBe(4);
    expect(h.tick().compress.length).toBe(2); // the third waits a step
    h.drain();
    expect(h.plans.every((p) => p.compress.length <= 2)).toBe(true);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: admission, preemption, abort', () => {
  it('admits while free pages cover the whole prompt plus the reserve', () => {
    // 10 pages of 4; prompts of 12 tokens need 3 pages (+1 reserve) each
    const h = new Harness(10, 4, { maxBatchTokens: 64, maxPrefillChunk: 64, admissionReservePages: 1 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((id) => h.add(id, 12, 2));
    const plan = h.tick();
    // a: first in, always (nothing running); 7 free ≥ 4 → b; 4 free ≥ 4 → c; 1 free < 4 → d waits
    expect(plan.prefill.map((p) => p.request)).toEqual([a, b, c]);
    expect(h.kv.numFreePages).toBe(1);
    expect(h.sched.numWaiting).toBe(1);
    h.tick(); // compress
    expect(d.numComputedTokens).toBe(0);
    h.drain();
    expect(d.outputIds.length).toBe(2);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('with the reserve at 0 a prompt may take the last free pages', () => {
    const h = new Harness(6, 4, { maxBatchTokens: 64, maxPrefillChunk: 64, admissionReservePages: 0 });
    h.add('a', 12, 1);
    h.add('b', 12, 1);
    h.tick((plan) => {
      expect(plan.prefill.length).toBe(2);
      expect(h.kv.numFreePages).toBe(0);
    });
    h.drain();
    h.expectAllPagesFree();
  });

  it('preempts the newest running request when decode needs a page, and recomputes it later', () => {
    // 6 pages of 4 tokens; three requests of 4 + 12 tokens need 4 pages each at the end
    const h = new Harness(6, 4, { maxBatchTokens: 16, maxPrefillChunk: 16, admissionReservePages: 0 });
    const [a, b, c] = ['a', 'b', 'c'].map((id, i) => h.add(id, 4, 12, i));
    let victim: StepPlan | undefined;
    while (!victim) {
      const plan = h.tick();
      if (plan.preempted.length > 0) victim = plan;
    }
    expect(victim.preempted).toEqual([c]); // the newest goes first
    expect(h.kv.has('c')).toBe(false);
    expect(c.numComputedTokens).toBe(0);
    expect(c.numPreemptions).toBe(1);
    expect(c.outputIds.length).toBeGreaterThan(0); // its tokens stay; only the KV is recomputed
    // a request that arrives later queues behind the preempted one
    const d = h.add('d', 4, 3, 100);
    expect(h.sched.debugString()).toMatch(/waiting \[c:prefill:0\/\d+ d:prefill:0\/4\]/);
    h.drain();
    const firstRun = (r: Request) => h.plans.findIndex((p, i) => i > h.plans.indexOf(victim!) && p.prefill.some((x) => x.request === r));
    expect(firstRun(c)).toBeLessThanOrEqual(firstRun(d));
    expect(h.sched.numPreemptions).toBeGreaterThanOrEqual(1);
    expect([a, b, c, d].every((r) => r.finishReason === 'length')).toBe(true);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('frees pages at once when a request is aborted, waiting or running', () => {
    const h = new Harness(8, 4, { maxBatchTokens: 16, maxPrefillChunk: 8, maxRunning: 2 });
    const [a, b, c] = [h.add('a', 10, 20), h.add('b', 6, 20), h.add('c', 3, 20)];
    h.tick();
    h.tick();
    expect(h.sched.numWaiting).toBe(1);
    expect(h.sched.abort('c')).toBe(c); // waiting: no pages to give back
    expect(c.finishReason).toBe('abort');
    expect(h.sched.numWaiting).toBe(0);
    const free = h.kv.numFreePages;
    const held = h.kv.blockTable('a').length;
    expect(held).toBe(3);
    expect(h.sched.abort('a')).toBe(a);
    expect(h.kv.has('a')).toBe(false);
    expect(h.kv.numFreePages).toBe(free + held);
    expect(h.sched.abort('a')).toBeNull(); // twice is a no-op
    expect(h.sched.abort('nope')).toBeNull();
    const after = h.plans.length;
    h.drain();
    const named = h.plans.slice(after).flatMap((p) => [...p.decode, ...p.compress, ...p.prefill.map((x) => x.request)]);
    expect(new Set(named)).toEqual(new Set([b]));
    expect(b.outputIds.length).toBe(20);
    h.expectAllPagesFree();
  });

  it('an abort while the step runs: the executed plan still names it, the next plan does not', () => {
    const h = new Harness(16, 4, { maxBatchTokens: 16, maxPrefillChunk: 8 });
    const [a, b] = [h.add('a', 5, 10), h.add('b', 5, 10)];
    h.tick();
    h.tick();
    h.tick((plan) => {
      expect(plan.decode).toEqual([a, b]);
      h.sched.abort('a');
    });
    expect(h.kv.has('a')).toBe(false);
    expect(h.tick().decode).toEqual([b]);
    h.drain();
    expect(a.finishReason).toBe('abort');
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: the prefix cache', () => {
  it('a request whose prompt starts like a finished one starts its prefill after the cached pages', () => {
    const h = new Harness(32, 4, { maxBatchTokens: 64, maxPrefillChunk: 64 }, true);
    const shared = promptOf('doc', 10);
    const a = h.add('a', 13, 2, { prefix: shared });
    h.drain();
    expect(h.kv.prefixStats().cachedPages).toBe(3); // 14 computed tokens: 3 full pages
    const b = h.add('b', 12, 2, { prefix: shared });
    const plan = h.tick();
    expect(b.prefixHitTokens).toBe(8); // pages 0 and 1 hold shared[0..8); page 2 differs after token 10
    expect(plan.prefill.map((p) => [p.request.id, p.start, p.count])).toEqual([['b', 8, 4]]);
    h.drain();
    expect(a.outputIds.length + b.outputIds.length).toBe(4);
    h.expectOutputsComplete();
    h.expectAllPagesFree();
    expect(h.kv.prefixStats()).toMatchObject({ lookups: 2, hitRequests: 1, hitTokens: 8 });
  });

  it('shares pages between running requests, and a request with a press neither adopts nor publishes', () => {
    const h = new Harness(32, 4, { maxBatchTokens: 64, maxPrefillChunk: 64 }, true);
    const shared = promptOf('doc', 12);
    h.add('a', 14, 8, { prefix: shared });
    h.tick();
    h.add('b', 14, 8, { prefix: shared });
    const c = h.add('c', 14, 8, { prefix: shared, compression: PRESS });
    h.tick();
    expect(h.kv.blockTable('b').slice(0, 3)).toEqual(h.kv.blockTable('a').slice(0, 3));
    expect(h.kv.blockTable('a').slice(0, 3).map((p) => h.kv.pool.refCount(p))).toEqual([2, 2, 2]);
    expect(c.prefixHitTokens).toBe(0);
    h.drain();
    h.expectOutputsComplete();
    h.expectAllPagesFree();
  });

  it('a cached free page handed out again leaves the cache and is reported to every reuse listener', () => {
    const h = new Harness(4, 4, { maxBatchTokens: 64, maxPrefillChunk: 64, admissionReservePages: 0 }, true);
    const seen: number[][] = [[], []];
    h.kv.pool.addReuseListener((p) => seen[0].push(p));
    h.kv.pool.addReuseListener((p) => seen[1].push(p));
    h.add('a', 9, 1);
    h.drain(); // 9 tokens: pages 0, 1 full and cached
    expect(h.kv.prefixStats().cachedPages).toBe(2);
    h.add('b', 16, 1); // another prompt: takes every page
    h.tick();
    expect(h.kv.prefixStats()).toMatchObject({ cachedPages: 4, reusedPages: 2 }); // a's two pages are gone; b's own four are cached now
    expect(seen[0].sort()).toEqual(seen[1].sort());
    expect(seen[0]).toHaveLength(2);
    expect(h.kv.drainReusedPages().sort()).toEqual(seen[0]);
    expect(h.kv.drainReusedPages()).toEqual([]);
    h.drain();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: random workloads', () => {
  let forcedPreemptions = 0;
  let recompressed = 0;
  let prefixHits = 0;
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('seed %i: 50 requests on a small pool finish, within limits, and free every page', (seed) => {
    const rand = rng(seed);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    const pageSize = [1, 2, 4, 16][int(0, 3)];
    const numPages = int(Math.ceil(48 / pageSize), Math.ceil(160 / pageSize));
    const maxBatchTokens = int(4, 48);
    const config: Partial<SchedulerConfig> = {
      maxBatchTokens,
      maxPrefillChunk: int(1, maxBatchTokens),
      maxSampledRows: int(1, 12),
      maxRunning: int(1, 12),
      maxCompressBatch: int(1, 6),
      admissionReservePages: int(0, 3),
    };
    const prefixCache = seed % 2 === 0;
    const h = new Harness(numPages, pageSize, config, prefixCache);
    const capacity = numPages * pageSize;
    const shared = promptOf('shared', 40); // prompts that start the same: prefix-cache hits
    const arrivals = Array.from({ length: 50 }, (_, i) => {
      const maxNew = int(1, 40);
      const prompt = Math.max(1, Math.min(int(1, 60), capacity + 1 - maxNew)); // the whole request fits the pool (validateRequest)
      const abortAt = rand() < 0.15 ? int(0, 150) : -1;
      const compression: CompressionSpec | undefined = rand() < 0.3 ? { press: 'knorm', ratio: 0.2 + 0.6 * rand(), window: int(0, config.maxPrefillChunk!) } : undefined;
      const prefix = rand() < 0.4 ? shared.slice(0, int(1, prompt)) : undefined;
      return { id: `q${i}`, prompt, maxNew, at: int(0, 120), abortAt, midStep: rand() < 0.5, opts: { ...(compression ? { compression } : {}), ...(prefix ? { prefix } : {}) } };
    });
    arrivals.sort((x, y) => x.at - y.at);
    let next = 0;
    for (let step = 0; next < arrivals.length || h.sched.hasWork(); step++) {
      expect(step, `seed ${seed}: stuck: ${h.sched.debugString()}`).toBeLessThan(20_000);
      while (next < arrivals.length && arrivals[next].at <= step) {
        const a = arrivals[next++];
        h.add(a.id, a.prompt, a.maxNew, { ...a.opts, arrival: step });
      }
      const toAbort = arrivals.filter((a) => a.abortAt === step && h.requests.some((r) => r.id === a.id && !r.finished));
      for (const a of toAbort.filter((x) => !x.midStep)) h.sched.abort(a.id);
      if (!h.sched.hasWork()) continue;
      h.tick(() => {
        for (const a of toAbort.filter((x) => x.midStep)) h.sched.abort(a.id);
      });
    }
    h.expectOutputsComplete();
    h.expectAllPagesFree();
    forcedPreemptions += h.sched.numPreemptions;
    recompressed += [...h.evictions.values()].filter((e) => e.length > 1).length;
    prefixHits += h.kv.prefixStats().hitTokens;
  });

  it('the workloads above forced preemptions, recompressed preempted requests and hit the prefix cache', () => {
    expect(forcedPreemptions).toBeGreaterThan(50);
    expect(recompressed).toBeGreaterThan(5); // compressed, preempted, compressed again the same way
    expect(prefixHits).toBeGreaterThan(100);
  });
});

describe('Scheduler config', () => {
  const kv = KVCacheManager.simulated(4, 4);
  it.each<[string, Partial<SchedulerConfig>]>([
    ['maxBatchTokens 0', { maxBatchTokens: 0 }],
    ['maxPrefillChunk above maxBatchTokens', { maxBatchTokens: 8, maxPrefillChunk: 16 }],
    ['a fractional maxRunning', { maxRunning: 1.5 }],
    ['maxSampledRows 0', { maxSampledRows: 0 }],
    ['maxCompressBatch NaN', { maxCompressBatch: Number.NaN }],
    ['a negative reserve', { admissionReservePages: -1 }],
  ])('rejects %s with a RangeError', (_, config) => {
    expect(() => new Scheduler(kv, config)).toThrow(RangeError);
  });

  it('accepts a zero reserve and fills the rest from the defaults', () => {
    const s = new Scheduler(kv, { admissionReservePages: 0, maxBatchTokens: 8, maxPrefillChunk: 8 });
    expect(s.config.admissionReservePages).toBe(0);
    expect(s.config.maxRunning).toBeGreaterThan(0);
  });
});
