/**
 * The soak (issue 16): 1,000 requests over stories260K and the shapes VLM on
 * one device, in seeded bursts — mixed lengths, images, compression on some,
 * compressed prefix caches stored in IndexedDB, the CPU tier, streaming and
 * not, 10 % aborted at random points (by AbortSignal, engine.abort(id) and
 * leaving the stream), some ids reused after their abort. The baseline in the
 * same run is each prompt's solo greedy output and the GPU bytes after the
 * warm-up (bench/soak-driver.ts). Reported: the vLLM-style idle invariants
 * (checkIdle after every drained burst and at the end, checkInvariants after
 * every step), outputs equal to solo, GPU bytes against their level, and the
 * JS heap (after a forced GC, sampled) with its fitted rise over the second
 * half against HEAP_BOUND_BYTES.
 *
 *   npm run bench -- soak                       # 1,000 requests
 *   npm run bench -- soak --requests 200 --seed 3 --short
 *
 * options: --requests 1000  --seed 1  --short (the CI prompt set, ≤ 6 tokens each)
 *          --sample 10 (settled requests between samples)  --store indexeddb | memory
 * The runner starts Chromium with --js-flags=--expose-gc and --enable-precise-memory-info
 * for this suite (bench/run.ts), so heap samples follow a full GC and are exact.
 */
import { Engine } from '../../src/engine/engine.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import { loadSoakImages, runSoak, type SoakReport } from '../soak-driver.ts';
import { buildSpecs, DEFAULT_PLAN, IMAGE_ITEMS, planSoak, shortSpecs, SOAK_TEXT_LOAD, SOAK_VLM_LOAD } from '../soak-workload.ts';

/** The stated bound on the JS heap: the least-squares rise over the second half of the run. */
export const HEAP_BOUND_BYTES = 4 << 20;

const TEXT_MODEL = '/models/stories260K';
const VLM_MODEL = '/models/tiny-vlm-shapes';

interface ChromeMemory {
  usedJSHeapSize: number;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const requests = positiveInt(opts.requests ?? '1000', 'requests');
  const seed = positiveInt(opts.seed ?? '1', 'seed');
  const sampleEvery = positiveInt(opts.sample ?? '10', 'sample');
  const store = opts.store ?? 'indexeddb';
  if (store !== 'indexeddb' && store !== 'memory') throw new Error(`--store ${store}: use indexeddb or memory`);
  const short = opts.short === 'true';
  const persist = { store, name: `fastcache-soak-${seed}` } as const;
  const engines = {
    text: await Engine.load(gpu, TEXT_MODEL, { ...SOAK_TEXT_LOAD, persist }),
    vlm: await Engine.load(gpu, VLM_MODEL, { ...SOAK_VLM_LOAD, persist }),
  };
  try {
    // a previous run's stored entries would make this run's first requests hits: start empty
    await engines.text.cache.clear();
    await engines.vlm.cache.clear();
    const specs = short ? shortSpecs() : buildSpecs();
    const bursts = planSoak(specs, { ...DEFAULT_PLAN, requests, seed });
    const images = await loadSoakImages(VLM_MODEL, IMAGE_ITEMS.map((i) => i.image));
    // performance.memory is a snapshot taken when the getter runs: read it again for each sample
    const heapBytes = () => (performance as Performance & { memory?: ChromeMemory }).memory?.usedJSHeapSize ?? null;
    const gc = (globalThis as { gc?: () => void }).gc;
    log(`soak: ${requests} requests in ${bursts.length} bursts over ${specs.length} prompts (seed ${seed}); heap ${heapBytes() !== null ? 'sampled' : 'not readable'}${gc ? ' after GC' : ''}`);
    const r = await runSoak(engines, specs, bursts, { images, sampleEvery, log, heapBytes, gc });
    return report(r, { requests, seed, short, store, heapAfterGc: !!gc });
  } finally {
    await engines.text.destroy();
    await engines.vlm.destroy();
  }
}

function report(r: SoakReport, o: { requests: number; seed: number; short: boolean; store: string; heapAfterGc: boolean }): BenchResult {
  const c = r.counts;
  const heap = r.heapSecondHalf;
  const heapOk = heap !== null && heap.fitIncrease <= HEAP_BOUND_BYTES;
  const gpuOk = r.gpuBytes.end === r.gpuBytes.level;
  const tokPerS = r.generatedTokens / (r.wallMs / 1000);
  const t = r.engines.text, v = r.engines.vlm;
  const rows: (string | number)[][] = [
    ['requests (completed / aborted / error)', `${c.requests} (${c.completed} / ${c.aborted} / ${c.errors})`, 'all settled'],
    ['aborts planned (too late to stop)', `${c.abortsPlanned} (${c.abortsTooLate})`, '10 % of requests'],
    ['aborts by point', Object.entries(c.abortsByPoint).map(([k, x]) => `${k} ${x.landed}/${x.planned}`).join(', '), ''],
    ['aborts by how', Object.entries(c.abortsByHow).map(([k, n]) => `${k} ${n}`).join(', '), ''],
    ['by API', Object.entries(c.byApi).map(([k, n]) => `${k} ${n}`).join(', '), ''],
    ['reused ids (completed, equal to solo)', `${c.reusedIds} (${c.reusedCompletedEqual})`, 'all'],
    ['outputs differing from solo', c.mismatches, 0],
    ['warm-up outputs differing from solo', r.warmUp.mismatches, 0],
    ['idle checks / invariant checks', `${r.idleChecks} / ${r.invariantChecks}`, ''],
    ['failures', r.failures.length, 0],
    ['GPU MB after load / level after warm-up / end', `${mb(r.gpuBytes.afterLoad)} / ${mb(r.gpuBytes.level)} / ${mb(r.gpuBytes.end)}`, 'end = level'],
    ['GPU MB max during the soak', mb(r.gpuBytes.max), ''],
    ['JS heap MB, second half: first → last (min–max)', heap ? `${mb(heap.first)} → ${mb(heap.last)} (${mb(heap.min)}–${mb(heap.max)})` : 'not readable', ''],
    ['JS heap fitted rise over the second half', heap ? `${mb(heap.fitIncrease)} MB (${(heap.slopePerRequest / 1024).toFixed(2)} KiB/request)` : 'n/a', `≤ ${mb(HEAP_BOUND_BYTES)} MB`],
    ['wall s (bursts) / tokens / tok/s', `${(r.wallMs / 1000).toFixed(1)} / ${r.generatedTokens} / ${tokPerS.toFixed(1)}`, ''],
    ['prefix hits text / vlm (requests)', `${t.prefixHitRequests} / ${v.prefixHitRequests}`, ''],
    ['compressed requests text / vlm', `${t.compressedRequests} / ${v.compressedRequests}`, ''],
    ['preemptions text / vlm', `${t.preemptions} / ${v.preemptions}`, ''],
    ['CPU tier pages demoted / promoted (both)', `${t.cpuDemoted + v.cpuDemoted} / ${t.cpuPromoted + v.cpuPromoted}`, ''],
    ['stored entries written / hits / verify failures (both)', `${t.storedWritten + v.storedWritten} / ${t.storedHits + v.storedHits} / ${t.verifyFailures + v.verifyFailures}`, 'no failures'],
    ['vision encoder runs / feature-cache hits', `${v.encoderCalls} / ${v.featureCacheHits}`, ''],
    ['peak pages in use text / vlm (of)', `${t.peakPagesInUse}/${t.pagesTotal} / ${v.peakPagesInUse}/${v.pagesTotal}`, ''],
  ];
  const plots: PlotSpec[] = [
    line('JS heap after GC (MB)', 'heap', r, (s) => s.heapBytes),
    line('GPU bytes allocated (MB)', 'GPU', r, (s) => s.gpuBytes),
    { title: 'KV pages in use (both engines)', kind: 'line', xLabel: 'requests settled', yLabel: 'pages', series: [
      { name: 'in use', points: r.samples.map((s) => ({ x: s.done, y: s.pagesInUse })) },
      { name: 'prefix cache', points: r.samples.map((s) => ({ x: s.done, y: s.cachedPages })) },
    ] },
  ];
  const verdict = c.errors === 0 && c.mismatches === 0 && r.failures.length === 0 && gpuOk && heapOk;
  return {
    name: 'soak',
    data: { options: o, heapBoundBytes: HEAP_BOUND_BYTES, verdict, ...r },
    table: { headers: ['measure', 'value', 'expected'], rows },
    plots,
    notes: [
      `verdict: ${verdict ? 'PASS' : 'FAIL'} — errors ${c.errors}, outputs ≠ solo ${c.mismatches}, failures ${r.failures.length}, GPU bytes ${gpuOk ? 'back to' : 'NOT back to'} their level, heap rise ${heap ? mb(heap.fitIncrease) : 'n/a'} MB ${heapOk ? '≤' : '>'} ${mb(HEAP_BOUND_BYTES)} MB`,
      ...r.failures.slice(0, 10).map((f) => `failure: ${f}`),
      `baseline in the same run: each of the ${r.specs.length} prompts alone (greedy), then ${r.warmUp.requests} warm-up requests; the GPU level is taken after them`,
      `heap: ${o.heapAfterGc ? 'performance.memory.usedJSHeapSize after a forced GC' : 'usedJSHeapSize without a forced GC'}, every ${r.samples.length > 1 ? r.samples[1].done - r.samples[0].done : '?'} settled requests and at each drained burst`,
      `stored prefix caches: ${o.store}; seed ${o.seed}${o.short ? '; short prompt set' : ''}`,
    ],
  };
}

function line(title: string, name: string, r: SoakReport, y: (s: SoakReport['samples'][number]) => number | null): PlotSpec {
  const points = r.samples.flatMap((s) => {
    const v = y(s);
    return v === null ? [] : [{ x: s.done, y: v / 2 ** 20 }];
  });
  return { title, kind: 'line', xLabel: 'requests settled', yLabel: 'MB', series: [{ name, points }] };
}

function positiveInt(s: string, name: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} ${s}: expected a positive integer`);
  return n;
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(2);
}
