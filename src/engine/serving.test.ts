/**
 * Serving many requests at once on the GPU: continuous batching must never
 * change a token. Each request's tokens when served alone (one request at a
 * time) are the oracle; the same requests served together — staggered
 * arrivals, small steps so prefill chunks and decode rows share steps,
 * aborts, a pool too small for all (preemption and recomputation) — must
 * give exactly those tokens. Runs in Node (dawn) and in headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng, testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { Gpu } from '../gpu/context.ts';
import type { EngineEvent, GenerateOptions } from './types.ts';

/** Small steps: a 16-token prefill chunk and 32 rows a step, so chunks and decode rows mix. */
const SMALL_STEPS: EngineOptions = { pageSize: 16, prefillChunk: 16, scheduler: { maxBatchTokens: 32 } };

interface Job {
  prompt: number[];
  maxTokens: number;
  compression?: GenerateOptions['compression'];
  sampling?: GenerateOptions['sampling'];
  /** Stop after this many tokens: by leaving the stream ('break') or through an AbortSignal. */
  abort?: { after: number; how: 'break' | 'signal' };
}

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

/** BOS then `n - 1` ids drawn from the vocabulary (above the special ids). */
function prompts(seed: number, lengths: number[], vocab: number): number[][] {
  const rand = rng(seed);
  return lengths.map((n) => [1, ...Array.from({ length: n - 1 }, () => 3 + Math.floor(rand() * (vocab - 3)))]);
}

/** Streams one job; returns the token ids it received (a prefix when it was aborted). */
async function runJob(engine: Engine, job: Job, requestId: string, onToken?: (n: number) => void): Promise<number[]> {
  const ac = new AbortController();
  const opts: GenerateOptions = { maxTokens: job.maxTokens, ignoreEos: true, signal: ac.signal, requestId };
  if (job.sampling) opts.sampling = job.sampling;
  if (job.compression) opts.compression = job.compression;
  const tokens: number[] = [];
  for await (const chunk of engine.stream(job.prompt, opts)) {
    if (chunk.token < 0) continue; // text held back until the end
    tokens.push(chunk.token);
    onToken?.(tokens.length);
    if (job.abort?.after === tokens.length) {
      if (job.abort.how === 'break') break;
      ac.abort(); // keep reading: the stream ends by itself
    }
  }
  return tokens;
}

/** Each job alone, one after the other, on `engine`: the oracle. */
async function solo(engine: Engine, jobs: Job[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const [i, { abort: _, ...whole }] of jobs.entries()) out.push(await runJob(engine, whole, `solo-${i}`));
  engine.checkIdle();
  return out;
}

/**
 * All jobs on one engine at once, arriving in three waves: i % 3 == 0 at
 * once, i % 3 == 1 when job 0 has streamed 3 tokens, i % 3 == 2 after 30 ms.
 * Records the step count at which each job was submitted.
 */
async function serveStaggered(engine: Engine, jobs: Job[]): Promise<{ tokens: number[][]; submittedAtStep: number[] }> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const submittedAtStep: number[] = [];
  const start = (i: number) => {
    submittedAtStep[i] = engine.snapshot().steps;
    return runJob(engine, jobs[i], `job-${i}`, i === 0 ? (n) => n === 3 && release() : undefined);
  };
  const runs = jobs.map((_, i) => {
    if (i % 3 === 0) return start(i).finally(() => i === 0 && release());
    if (i % 3 === 1) return gate.then(() => start(i));
    return new Promise((r) => setTimeout(r, 30)).then(() => start(i));
  });
  return { tokens: await Promise.all(runs), submittedAtStep };
}

function record(engine: Engine): EngineEvent[] {
  const events: EngineEvent[] = [];
  engine.on((e) => events.push(e));
  return events;
}

function expectServed(jobs: Job[], got: number[][], want: number[][]): void {
  for (const [i, j] of jobs.entries()) {
    if (j.abort) {
      expect(got[i].length, `job ${i} stopped after ${j.abort.after}`).toBeGreaterThanOrEqual(j.abort.after);
      expect(got[i].length).toBeLessThan(j.maxTokens);
      expect(got[i], `aborted job ${i} is a prefix of its solo tokens`).toEqual(want[i].slice(0, got[i].length));
    } else {
      expect(got[i], `job ${i} (prompt ${j.prompt.length} tokens)`).toEqual(want[i]);
    }
  }
}

describe.each([
  { name: 'tiny-llama-gqa', lengths: [1, 3, 7, 12, 17, 24, 33, 50, 80, 120], maxTokens: (i: number) => 8 + ((i * 7) % 17) },
  { name: 'stories260K', lengths: [1, 5, 13, 29, 50, 80, 110], maxTokens: (i: number) => 6 + ((i * 5) % 11) },
])('$name: batching is lossless', ({ name, lengths, maxTokens }) => {
  let alone: Engine;
  let vocab: number;
  beforeAll(async () => {
    alone = await Engine.load(gpu, modelRef(name), { kvPages: 64 });
    vocab = alone.config.vocabSize;
  });
  afterAll(() => alone.destroy());

  it('greedy: staggered arrivals, chunked prefill among decode rows, two aborts — every token equals the solo run', async () => {
    const ps = prompts(7, lengths, vocab);
    const jobs: Job[] = ps.map((prompt, i) => ({ prompt, maxTokens: maxTokens(i) }));
    jobs[3].abort = { after: 2, how: 'break' };
    jobs[5].abort = { after: 4, how: 'signal' };
    const want = await solo(alone, jobs);

    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 96, ...SMALL_STEPS });
    const events = record(engine);
    const { tokens, submittedAtStep } = await serveStaggered(engine, jobs);
    expectServed(jobs, tokens, want);
    expect(Math.max(...submittedAtStep)).toBeGreaterThan(0); // some arrived while others ran

    const s = engine.snapshot();
    const steps = events.filter((e) => e.kind === 'step');
    expect(steps.some((e) => e.decode > 0 && e.prefillTokens > 0)).toBe(true); // prefill chunks rode along decode rows
    expect(steps.every((e) => e.decode + e.prefillTokens <= 32)).toBe(true);
    expect(s.steps).toBe(steps.length);
    expect(s.meanBatch.decodeRows).toBeGreaterThan(1);
    expect(s.requestsFinished).toBe(jobs.length - 2);
    expect(s.requestsAborted).toBe(2);
    expect([s.requestsRunning, s.requestsWaiting, s.pool.pagesInUse]).toEqual([0, 0, 0]);
    engine.checkIdle();
    await engine.destroy();
  });

  if (name !== 'tiny-llama-gqa') return;

  it('seeded sampling (temperature 0.8, top_p 0.9) gives the same tokens alone and batched', async () => {
    const ps = prompts(11, [2, 9, 21, 40, 70], vocab);
    const jobs: Job[] = ps.map((prompt, i) => ({ prompt, maxTokens: 12, sampling: { temperature: 0.8, topP: 0.9, seed: 1000 + 37 * i } }));
    const want = await solo(alone, jobs);
    const [greedy] = await solo(alone, [{ ...jobs[2], sampling: { temperature: 0 } }]);
    expect(want[2]).not.toEqual(greedy); // the sampler is really sampling

    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 96, ...SMALL_STEPS });
    const { tokens } = await serveStaggered(engine, jobs);
    expectServed(jobs, tokens, want);
    engine.checkIdle();
    await engine.destroy();
  });

  it('an abort that lands after the plan is made (A decoding, B in the compress stage) drops only that request', async () => {
    const [pa, pb] = prompts(17, [6, 11], vocab);
    const press = { press: 'knorm', ratio: 0.5 };
    const bJob: Job = { prompt: pb, maxTokens: 10 };
    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 32, ...SMALL_STEPS });
    const want = await engine.generate(pb, { maxTokens: 10, ignoreEos: true, compression: press });
    // another caller aborts A in the step whose plan holds A's decode row and B's compress stage
    let abortedInStep = false;
    engine.on((e) => {
      if (e.kind !== 'step-start' || abortedInStep || !e.compress.includes('B') || !e.decode.includes('A')) return;
      abortedInStep = engine.cancel('A');
      expect(engine.snapshot().requestsRunning).toBe(1); // A's pages are back at once
    });
    let releaseB!: () => void;
    const bMayStart = new Promise<void>((r) => (releaseB = r));
    const a = runJob(engine, { prompt: pa, maxTokens: 30 }, 'A', (n) => n === 3 && releaseB());
    const b = bMayStart.then(async () => (await engine.generate(bJob.prompt, { maxTokens: 10, ignoreEos: true, compression: press, requestId: 'B' })).tokens);
    const [ta, tb] = await Promise.all([a, b]);
    expect(abortedInStep).toBe(true);
    expect(ta.length).toBeLessThan(30);
    expect(tb).toEqual(want.tokens);
    expect(engine.snapshot().compression.requests).toBe(2);
    engine.checkIdle();
    await engine.destroy();
  });

  it('the CPU tier: pages the pool hands out again are demoted and promoted back many times, and no token changes', async () => {
    // the 20 requests above on the same 12-page pool, with and without the CPU tier: 5 prompts asked 4 times each
    const distinct = prompts(13, [20, 25, 30, 35, 40], vocab);
    const jobs: Job[] = Array.from({ length: 20 }, (_, i) => ({ prompt: distinct[i % distinct.length], maxTokens: 40 }));
    const want = await solo(alone, jobs.slice(0, distinct.length));
    const off = await Engine.load(gpu, modelRef(name), { kvPages: 12, cpuCacheBytes: 0, ...SMALL_STEPS });
    const { tokens: offTokens } = await serveStaggered(off, jobs);
    const offStats = off.snapshot();
    await off.destroy();
    const on = await Engine.load(gpu, modelRef(name), { kvPages: 12, cpuCacheBytes: 4 << 20, preemption: 'recompute', ...SMALL_STEPS }); // the cache tier alone (offload: below)
    const events = record(on);
    const { tokens } = await serveStaggered(on, jobs);
    await on.flush();
    expectServed(jobs, tokens, jobs.map((_, i) => want[i % distinct.length]));
    expect(tokens).toEqual(offTokens);
    const s = on.snapshot();
    expect(s.tiers!.cpu.demotedPages).toBeGreaterThan(10);
    expect(s.tiers!.cpu.promotedPages).toBeGreaterThan(10);
    expect(s.tiers!.transfers.pagesUp).toBe(s.tiers!.cpu.promotedPages);
    const steps = events.flatMap((e) => (e.kind === 'step' ? [e] : []));
    expect(steps.reduce((n, e) => n + e.pagesUp, 0)).toBe(s.tiers!.cpu.promotedPages); // the step events carry the moves
    expect(steps.reduce((n, e) => n + e.pagesDown, 0)).toBe(s.tiers!.transfers.pagesDown);
    expect(s.tiers!.cpu.bytes).toBeLessThanOrEqual(4 << 20);
    expect(s.promptTokens).toBeLessThan(offStats.promptTokens); // CPU hits instead of recompute
    on.checkIdle();
    console.log(`CPU tier on 12 GPU pages: ${s.tiers!.cpu.demotedPages} demoted, ${s.tiers!.cpu.promotedPages} promoted, prompt tokens ${s.promptTokens} vs ${offStats.promptTokens} without`);
    await on.destroy();
  });

  it('preemption by offload: swapped-out requests (compressed ones too) resume with their cache, token for token', async () => {
    const presses = [{ press: 'snapkv', ratio: 0.5, window: 8 }, undefined, { press: 'knorm', ratio: 0.5 }];
    const distinct = prompts(23, [22, 27, 31, 36, 41, 45], vocab);
    const jobs: Job[] = distinct.flatMap((prompt, i) => [0, 1].map((k) => ({ prompt, maxTokens: 40, ...(presses[(i + k) % 3] ? { compression: presses[(i + k) % 3] } : {}) })));
    const want = await solo(alone, jobs);
    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 12, preemption: 'offload', prefixCache: true, cpuCacheBytes: 8 << 20, ...SMALL_STEPS });
    const { tokens } = await serveStaggered(engine, jobs);
    await engine.flush();
    expectServed(jobs, tokens, want);
    const s = engine.snapshot();
    expect(s.preemptions).toBeGreaterThan(0);
    expect(s.tiers!.swaps.outs).toBeGreaterThan(0);
    expect(s.tiers!.swaps.ins + s.tiers!.swaps.fallbacks).toBe(s.tiers!.swaps.outs);
    expect(s.tiers!.swaps.ins).toBeGreaterThan(0);
    expect(s.tiers!.swaps.swappedNow).toBe(0);
    expect(s.tiers!.cpu.bytes).toBeLessThanOrEqual(8 << 20);
    engine.checkIdle();
    console.log(`offload on 12 pages: ${s.preemptions} preemptions, ${s.tiers!.swaps.outs} swap-outs, ${s.tiers!.swaps.ins} swap-ins, ${s.tiers!.swaps.fallbacks} fallbacks to recompute, ${s.compression.requests} compressions for ${jobs.filter((j) => j.compression).length} compressed requests`);
    await engine.destroy();
  });

  it('compressed requests preempted and recomputed get the cache of their uninterrupted run: token for token', async () => {
    // a press with a window (snapkv), one without (knorm), one by position (streaming-llm); 12 pages force preemptions
    const presses = [{ press: 'snapkv', ratio: 0.5, window: 8 }, { press: 'knorm', ratio: 0.5 }, { press: 'streaming-llm', ratio: 0.6 }];
    const distinct = prompts(19, [22, 27, 31, 36, 41, 45], vocab);
    const jobs: Job[] = distinct.flatMap((prompt, i) => [0, 1].map((k) => ({ prompt, maxTokens: 40, compression: presses[(i + k) % 3] })));
    const want = await solo(alone, jobs);
    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 12, preemption: 'recompute', ...SMALL_STEPS });
    const events = record(engine);
    const { tokens } = await serveStaggered(engine, jobs);
    expectServed(jobs, tokens, want);
    const s = engine.snapshot();
    const preemptedAfterDecoding = events.filter((e) => e.kind === 'request-finished' && e.metrics.preemptions > 0).length;
    expect(s.preemptions).toBeGreaterThan(0);
    expect(preemptedAfterDecoding).toBeGreaterThan(0);
    expect(s.compression.requests).toBeGreaterThan(jobs.length); // preempted requests were compressed again, the same way
    engine.checkIdle();
    console.log(`compressed requests on 12 pages: ${s.preemptions} preemptions, ${s.compression.requests} compressions for ${jobs.length} requests`);
    await engine.destroy();
  });

  it('a pool that holds a few requests: 20 requests complete through preemption, token for token', async () => {
    // 12 pages of 16 tokens; each request grows to ceil((prompt + 39) / 16) = 4–5 pages, so at most 2–3 fit at once
    const distinct = prompts(13, [20, 25, 30, 35, 40], vocab);
    const jobs: Job[] = Array.from({ length: 20 }, (_, i) => ({ prompt: distinct[i % distinct.length], maxTokens: 40 }));
    const want = await solo(alone, jobs.slice(0, distinct.length));
    const engine = await Engine.load(gpu, modelRef(name), { kvPages: 12, cpuCacheBytes: 0, ...SMALL_STEPS }); // no CPU tier: every preempted prompt is recomputed
    const events = record(engine);
    const { tokens } = await serveStaggered(engine, jobs);
    expectServed(jobs, tokens, jobs.map((_, i) => want[i % distinct.length]));

    const s = engine.snapshot();
    const steps = events.flatMap((e) => (e.kind === 'step' ? [e] : []));
    expect(s.preemptions).toBeGreaterThan(0);
    expect(steps.reduce((n, e) => n + e.preempted, 0)).toBe(s.preemptions);
    const finished = events.flatMap((e) => (e.kind === 'request-finished' ? [e] : []));
    expect(finished.length).toBe(20);
    expect(finished.every((e) => e.finishReason === 'length' && e.metrics.completionTokens === 40)).toBe(true);
    expect(finished.reduce((n, e) => n + e.metrics.preemptions, 0)).toBe(s.preemptions);
    expect(events.filter((e) => e.kind === 'request-queued').length).toBe(20);
    expect(s.generatedTokens).toBe(20 * 40);
    expect(s.promptTokens).toBeGreaterThan(jobs.reduce((n, j) => n + j.prompt.length, 0)); // recomputation ran prompts again
    expect(s.pool.peakPagesInUse).toBeGreaterThan(0);
    expect(s.pool.peakPagesInUse).toBeLessThanOrEqual(12);
    expect(Math.max(...steps.map((e) => e.pagesInUse))).toBeLessThanOrEqual(s.pool.peakPagesInUse);
    expect(s.meanBatch.decodeRows).toBeGreaterThan(1);
    expect(s.throughputTokPerS).toBeGreaterThan(0);
    expect([s.requestsRunning, s.requestsWaiting, s.pool.pagesInUse]).toEqual([0, 0, 0]);
    engine.checkIdle();
    console.log(`pool of 12 pages, 20 requests × 40 tokens: ${s.steps} steps, ${s.preemptions} preemptions, mean decode rows ${s.meanBatch.decodeRows.toFixed(2)}`);
    await engine.destroy();
  });
});
