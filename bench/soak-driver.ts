/**
 * The soak, shared by the benchmark (bench/suites/soak.ts, Chromium) and the
 * CI test (test/soak.node.test.ts, Node): given two loaded engines (a text
 * model and the shapes VLM, on one Gpu) and a plan (soak-workload.ts), it
 *
 *   1. runs every distinct prompt once alone, greedy: its solo output;
 *   2. warms up: every prompt once more, all at once (the largest steps the
 *      soak will run), and takes the GPU bytes allocated then as the level;
 *   3. sends the plan's bursts — each request through its API, aborted where
 *      planned, a reused id only once its previous holder has settled —
 *      drained or overlapping as planned;
 *
 * checking checkInvariants() after every step (an engine event, so never
 * mid-step), checkIdle() on both engines whenever a burst has drained and at
 * the end, every request against its solo output, and sampling the heap
 * (through the caller's probe, after its GC), the GPU bytes and the pages in
 * use every `sampleEvery` settled requests. It reports; it asserts nothing.
 */
import type { Engine } from '../src/engine/engine.ts';
import type { ChatMessage } from '../src/engine/types.ts';
import { resolveSource } from '../src/model/source.ts';
import { engineOptions, EngineWatch, runRequest, type RequestRecord, type SoloOutput } from './soak-request.ts';
import type { Burst, EngineName, PlannedRequest, SoakSpec } from './soak-workload.ts';

export interface SoakEngines {
  text: Engine;
  vlm: Engine;
}

export interface SoakHooks {
  /** The shapes test images by index (loadSoakImages). */
  images: Map<number, Blob>;
  /** Sample every this many settled requests. */
  sampleEvery: number;
  log?: (s: string) => void;
  /** Bytes of JS heap in use now, or null where it cannot be read. */
  heapBytes?: () => number | null;
  /** A full GC before each heap sample, where the runtime exposes one. */
  gc?: () => void;
  /** Rounds of the warm-up (every prompt at once; default 2: the second on the first one's cached prefixes). */
  warmRounds?: number;
}

export interface Sample {
  /** Requests settled so far. */
  done: number;
  ms: number;
  heapBytes: number | null;
  gpuBytes: number;
  pagesInUse: number;
  cachedPages: number;
  inFlight: number;
  /** Taken when every request had settled (a drained burst). */
  idle: boolean;
}

export interface Fit {
  samples: number;
  fromDone: number;
  toDone: number;
  first: number;
  last: number;
  min: number;
  max: number;
  /** Least-squares slope, bytes per request. */
  slopePerRequest: number;
  /** The fitted line's rise from the first to the last sample of the range. */
  fitIncrease: number;
}

export interface EngineSummary {
  model: string;
  finished: number;
  aborted: number;
  steps: number;
  preemptions: number;
  prefixHitRequests: number;
  prefixHitTokens: number;
  compressedRequests: number;
  encoderCalls: number;
  featureCacheHits: number;
  peakPagesInUse: number;
  pagesTotal: number;
  /** Prefix pages demoted to the CPU tier / promoted back; stored (persisted) entries written / adopted. */
  cpuDemoted: number;
  cpuPromoted: number;
  storedWritten: number;
  storedHits: number;
  verifyFailures: number;
}

export interface SoakReport {
  specs: (Pick<SoakSpec, 'key' | 'engine' | 'compression' | 'maxTokens' | 'ignoreEos'> & { kind: string; promptTokens: number; soloTokens: number; soloFinish: string; soloMs: number })[];
  records: RequestRecord[];
  bursts: { size: number; drain: boolean; gapMs: number }[];
  counts: {
    requests: number; completed: number; aborted: number; abortsPlanned: number; abortsTooLate: number; errors: number; mismatches: number;
    reusedIds: number; reusedCompletedEqual: number; byApi: Record<string, number>; abortsByPoint: Record<string, { planned: number; landed: number }>; abortsByHow: Record<string, number>;
  };
  warmUp: { requests: number; mismatches: number };
  wallMs: number;
  soloMs: number;
  warmMs: number;
  generatedTokens: number;
  gpuBytes: { afterLoad: number; afterSolo: number; level: number; end: number; max: number; min: number; atDrains: number[] };
  idleChecks: number;
  invariantChecks: number;
  failures: string[];
  samples: Sample[];
  heapSecondHalf: Fit | null;
  gpuSecondHalf: Fit | null;
  engines: Record<EngineName, EngineSummary>;
}

/** The images the plan's image prompts use, read through the model source (disk in Node, HTTP in the browser). */
export async function loadSoakImages(model: string, indices: number[]): Promise<Map<number, Blob>> {
  const src = resolveSource(model);
  const out = new Map<number, Blob>();
  for (const i of indices) {
    const bytes = await src.readFile(`testset/test_${String(i).padStart(4, '0')}.png`);
    out.set(i, new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  }
  return out;
}

/** A spec's prompt: a string for the text model, chat messages for the VLM. */
export function specInput(spec: SoakSpec, images: Map<number, Blob>): string | ChatMessage[] {
  const s = spec.input;
  if (s.kind === 'text') return s.text;
  if (s.kind === 'chat') return [...(s.system ? [{ role: 'system' as const, content: s.system }] : []), { role: 'user', content: s.question }];
  const image = images.get(s.image);
  if (!image) throw new Error(`soak: image ${s.image} not loaded`);
  return [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text: s.question }] }];
}

export async function runSoak(engines: SoakEngines, specs: SoakSpec[], bursts: Burst[], hooks: SoakHooks): Promise<SoakReport> {
  const log = hooks.log ?? (() => {});
  const all = [engines.text, engines.vlm];
  const failures: string[] = [];
  const fail = (s: string) => failures.length < 200 && failures.push(s);
  let invariantChecks = 0;
  for (const [name, e] of Object.entries(engines) as [EngineName, Engine][]) {
    e.on((ev) => {
      if (ev.kind !== 'step') return;
      invariantChecks++;
      try {
        e.checkInvariants();
      } catch (err) {
        fail(`${name} after a step: ${(err as Error).message}`);
      }
    });
  }
  const watches = { text: new EngineWatch(engines.text), vlm: new EngineWatch(engines.vlm) };
  const gpuBytes = () => [...new Set(all.map((e) => e.gpu))].reduce((n, g) => n + g.memory.snapshot().bytes, 0);
  let idleChecks = 0;
  const checkIdle = (where: string) => {
    idleChecks++;
    for (const [name, e] of Object.entries(engines) as [EngineName, Engine][]) {
      try {
        e.checkIdle();
      } catch (err) {
        fail(`${name} ${where}: ${(err as Error).message}`);
      }
    }
  };
  const afterLoad = gpuBytes();

  // 1. solo outputs
  const t0 = performance.now();
  const inputs = specs.map((s) => specInput(s, hooks.images));
  const solos: SoloOutput[] = [];
  const specRows: SoakReport['specs'] = [];
  for (const s of specs) {
    const ts = performance.now();
    const r = await engines[s.engine].generate(inputs[s.key], engineOptions(s));
    if (r.finishReason === 'error' || r.finishReason === 'abort') throw new Error(`soak: spec ${s.key} alone ended '${r.finishReason}' ${r.error ?? ''}`);
    solos.push({ tokens: r.tokens, text: r.text, finishReason: r.finishReason });
    specRows.push({ key: s.key, engine: s.engine, kind: s.input.kind, compression: s.compression, maxTokens: s.maxTokens, ignoreEos: s.ignoreEos, promptTokens: r.promptTokens, soloTokens: r.tokens.length, soloFinish: r.finishReason, soloMs: performance.now() - ts });
  }
  checkIdle('after the solo runs');
  const afterSolo = gpuBytes();
  const soloMs = performance.now() - t0;
  log(`solo: ${specs.length} prompts alone in ${(soloMs / 1000).toFixed(1)} s (prompts ${Math.min(...specRows.map((r) => r.promptTokens))}–${Math.max(...specRows.map((r) => r.promptTokens))} tokens)`);

  // 2. warm-up: every prompt at once, twice (the second round on the first one's cached prefixes)
  const t1 = performance.now();
  const warmRounds = hooks.warmRounds ?? 2;
  let warmMismatches = 0;
  for (let round = 0; round < warmRounds; round++) {
    const outs = await Promise.all(specs.map((s) => engines[s.engine].generate(inputs[s.key], engineOptions(s))));
    outs.forEach((r, k) => (r.tokens.join() !== solos[k].tokens.join() ? warmMismatches++ : 0));
  }
  checkIdle('after the warm-up');
  const level = gpuBytes();
  const warmMs = performance.now() - t1;
  log(`warm-up: ${warmRounds * specs.length} requests in ${(warmMs / 1000).toFixed(1)} s, ${warmMismatches} differing from solo; GPU bytes ${mb(afterLoad)} after load → ${mb(level)} MB (the level)`);

  // 3. the bursts
  const records: RequestRecord[] = [];
  const settled = new Map<number, Promise<RequestRecord>>();
  const samples: Sample[] = [];
  const atDrains: number[] = [];
  let done = 0;
  let inFlight = 0;
  const t2 = performance.now();
  const sample = (idle: boolean) => {
    hooks.gc?.();
    const snaps = all.map((e) => e.snapshot());
    samples.push({
      done, ms: performance.now() - t2, heapBytes: hooks.heapBytes?.() ?? null, gpuBytes: gpuBytes(), inFlight, idle,
      pagesInUse: snaps.reduce((n, s) => n + s.pool.pagesInUse, 0), cachedPages: snaps.reduce((n, s) => n + s.prefixCache.cachedPages, 0),
    });
  };
  sample(true);
  const start = (q: PlannedRequest): Promise<RequestRecord> => {
    const prev = q.reuseOf === null ? null : settled.get(q.reuseOf);
    if (q.reuseOf !== null && !prev) throw new Error(`soak plan: request ${q.n} reuses the id of ${q.reuseOf}, not sent yet`);
    inFlight++;
    const p = (async () => {
      await sleep(q.delayMs);
      if (prev) await prev; // the id is free once its previous holder has settled
      const spec = specs[q.spec];
      return runRequest(q, spec, { engine: engines[spec.engine], watch: watches[spec.engine], input: inputs[spec.key], solo: solos[spec.key], t0: t2 });
    })().then((r) => {
      records.push(r);
      inFlight--;
      done++;
      if (r.outcome === 'error') fail(`request ${r.n} (${r.api}, spec ${r.spec}, id ${r.id}): ${r.error}`);
      else if (!r.equal) fail(`request ${r.n} (${r.api}, spec ${r.spec}, ${r.outcome}${r.abort ? `, abort ${r.abort.point}/${r.abort.how}` : ''}) differs from its solo output`);
      if (done % hooks.sampleEvery === 0) sample(inFlight === 0);
      return r;
    });
    settled.set(q.n, p);
    return p;
  };
  for (let b = 0; b < bursts.length; b++) {
    const burst = bursts[b];
    burst.requests.forEach(start);
    if (burst.drain || b === bursts.length - 1) {
      await Promise.all(settled.values());
      checkIdle(`after burst ${b} drained`);
      atDrains.push(gpuBytes());
      sample(true);
    } else await sleep(burst.gapMs);
    if (b % 20 === 19) log(`burst ${b + 1}/${bursts.length}: ${done} settled, ${((performance.now() - t2) / 1000).toFixed(0)} s`);
  }
  const wallMs = performance.now() - t2;
  checkIdle('at the end');
  const end = gpuBytes();
  if (end !== level) fail(`GPU bytes at the end ${end} ≠ the level after warm-up ${level}`);

  records.sort((a, b) => a.n - b.n);
  const heap = samples.filter((s) => s.heapBytes !== null) as (Sample & { heapBytes: number })[];
  const half = Math.floor(records.length / 2);
  return {
    specs: specRows, records,
    bursts: bursts.map((b) => ({ size: b.requests.length, drain: b.drain, gapMs: b.gapMs })),
    counts: counts(records),
    warmUp: { requests: warmRounds * specs.length, mismatches: warmMismatches },
    wallMs, soloMs, warmMs,
    generatedTokens: records.reduce((n, r) => n + r.tokens, 0),
    gpuBytes: { afterLoad, afterSolo, level, end, max: Math.max(...samples.map((s) => s.gpuBytes)), min: Math.min(...samples.map((s) => s.gpuBytes)), atDrains },
    idleChecks, invariantChecks, failures, samples,
    heapSecondHalf: fit(heap.filter((s) => s.done >= half).map((s) => [s.done, s.heapBytes])),
    gpuSecondHalf: fit(samples.filter((s) => s.done >= half).map((s) => [s.done, s.gpuBytes])),
    engines: { text: summary(engines.text), vlm: summary(engines.vlm) },
  };
}

function counts(rs: RequestRecord[]): SoakReport['counts'] {
  const byApi: Record<string, number> = {};
  const abortsByPoint: Record<string, { planned: number; landed: number }> = {};
  const abortsByHow: Record<string, number> = {};
  for (const r of rs) {
    byApi[r.api] = (byApi[r.api] ?? 0) + 1;
    if (!r.abort) continue;
    const p = (abortsByPoint[r.abort.point] ??= { planned: 0, landed: 0 });
    p.planned++;
    if (r.outcome === 'aborted') p.landed++;
    abortsByHow[r.abort.how] = (abortsByHow[r.abort.how] ?? 0) + 1;
  }
  const reused = rs.filter((r) => r.reused);
  return {
    requests: rs.length,
    completed: rs.filter((r) => r.outcome === 'completed').length,
    aborted: rs.filter((r) => r.outcome === 'aborted').length,
    abortsPlanned: rs.filter((r) => r.abort).length,
    abortsTooLate: rs.filter((r) => r.abort && r.outcome === 'completed').length,
    errors: rs.filter((r) => r.outcome === 'error').length,
    mismatches: rs.filter((r) => r.outcome !== 'error' && !r.equal).length,
    reusedIds: reused.length,
    reusedCompletedEqual: reused.filter((r) => r.outcome === 'completed' && r.equal).length,
    byApi, abortsByPoint, abortsByHow,
  };
}

function summary(e: Engine): EngineSummary {
  const s = e.snapshot();
  return {
    model: e.modelId, finished: s.requestsFinished, aborted: s.requestsAborted, steps: s.steps, preemptions: s.preemptions,
    prefixHitRequests: s.prefixCache.hitRequests, prefixHitTokens: s.prefixCache.hitTokens, compressedRequests: s.compression.requests,
    encoderCalls: s.vision.encoderCalls, featureCacheHits: s.vision.featureCacheHits, peakPagesInUse: s.pool.peakPagesInUse, pagesTotal: s.pool.pagesTotal,
    cpuDemoted: s.tiers?.cpu.demotedPages ?? 0, cpuPromoted: s.tiers?.cpu.promotedPages ?? 0,
    storedWritten: s.tiers?.stored?.written ?? 0, storedHits: s.tiers?.stored?.hits ?? 0, verifyFailures: s.tiers?.stored?.verifyFailures ?? 0,
  };
}

/** Least squares over (x, y) points. */
export function fit(points: [number, number][]): Fit | null {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n, my = points.reduce((a, p) => a + p[1], 0) / n;
  const sxx = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0), sxy = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const slope = sxx > 0 ? sxy / sxx : 0;
  const ys = points.map((p) => p[1]);
  return {
    samples: n, fromDone: points[0][0], toDone: points[n - 1][0], first: ys[0], last: ys[n - 1], min: Math.min(...ys), max: Math.max(...ys),
    slopePerRequest: slope, fitIncrease: slope * (points[n - 1][0] - points[0][0]),
  };
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
