/**
 * The scheduler on simulated pools (test/scheduler-harness.ts): stages,
 * batch forming, admission, preemption, abort, config checks.
 */
import { describe, expect, it } from 'vitest';
import { GREEDY, Harness, PRESS } from '../../test/scheduler-harness.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { Request } from './request.ts';
import { Scheduler, type SchedulerConfig } from './scheduler.ts';
import type { StepPlan } from './step-plan.ts';


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
