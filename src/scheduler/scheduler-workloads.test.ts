/**
 * The scheduler on simulated pools (test/scheduler-harness.ts): the prefix
 * cache's hit path, and random workloads with presses, shared prefixes,
 * preemption and aborts.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../../test/gpu.ts';
import { Harness, PRESS, promptOf } from '../../test/scheduler-harness.ts';
import type { CompressionSpec } from './request.ts';
import type { SchedulerConfig } from './scheduler.ts';

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
    // the step drained them (with the copies they owe a lower tier)
    expect(h.kv.drainReusedPages()).toEqual([]);
    h.drain();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: the prefix cache forgets released requests', () => {
  it('a request looked up, refused admission and aborted while waiting leaves no keys behind', () => {
    const h = new Harness(4, 4, { maxBatchTokens: 64, maxPrefillChunk: 64, admissionReservePages: 0 }, true);
    h.add('a', 12, 4);
    h.add('b', 12, 4);
    h.tick(); // a admitted (3 of 4 pages); b looked up, then refused: too few free pages
    expect(h.sched.numWaiting).toBe(1);
    expect(h.kv.numPrefixTracked).toBe(2);
    h.sched.abort('b');
    expect(h.kv.numPrefixTracked).toBe(1);
    h.drain();
    h.expectAllPagesFree();
  });
});

describe('Scheduler: random workloads', () => {
  let forcedPreemptions = 0;
  let recompressed = 0;
  let prefixHits = 0;
  let swapIns = 0;
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
    const offload = seed % 3 === 0 ? int(2, 40) * 64 : 0; // preemption by swap-out into a CPU tier of a few pages
    const h = new Harness(numPages, pageSize, config, prefixCache, offload);
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
    swapIns += h.sched.swapStats.swapIns;
    prefixHits += h.kv.prefixStats().hitTokens;
  });

  it('the workloads above forced preemptions, recompressed preempted requests and hit the prefix cache', () => {
    expect(forcedPreemptions).toBeGreaterThan(50);
    expect(recompressed).toBeGreaterThan(5); // compressed, preempted, compressed again the same way
    expect(prefixHits).toBeGreaterThan(100);
    expect(swapIns).toBeGreaterThan(10); // preempted requests resumed from the CPU tier
  });
});

