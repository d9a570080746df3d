/**
 * What KV compression buys in memory, measured on the engine's own scheduler
 * (same model, prompts and seed; compression off vs on in one run):
 *
 *   (a) capacity — a small fixed pool (default 64 pages of 16 tokens); all
 *       requests are submitted at once; how many run concurrently (peak decode
 *       rows in one step, peak running requests), preemptions, peak pages,
 *       total time. Compression frees prompt pages right after prefill, so
 *       more requests fit.
 *   (b) the concurrency workload — N requests arriving evenly at a saturating
 *       rate (a multiple of the service rate of one request alone) on a pool
 *       the uncompressed load outgrows: peak pages and throughput. Every
 *       request has its own prompt and the prefix cache is off, so no row
 *       gains from shared prefixes (compressed requests never share pages).
 *       Configs run in turn, --load-repeats times, so machine noise shows as
 *       the spread between repeats of one config.
 *
 * The in-process Engine (on the page's thread) is used so each step can be
 * observed synchronously (engine.on('step') + engine.snapshot()).
 *
 * options: --model /models/stories260K  --n 16 (requests in a)  --prompt 400 (tokens)
 *          --max-tokens 64  --pages 64  --page-size 16
 *          --configs none,snapkv@0.5,snapkv@0.75,knorm@0.5,knorm@0.75
 *          --load-n 24 (requests in b)  --load-rate 8 (× service rate μ)  --load-pages 200 (0: default pool)
 *          --load-configs none,snapkv@0.5,knorm@0.5,streaming-llm@0.5  --load-repeats 3
 */
import { Engine } from '../../src/engine/engine.ts';
import type { CompressionOptions, EngineEvent } from '../../src/engine/types.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { EngineStats } from '../../src/api/stats.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import { storyPrompts, type StoryPrompt } from './stories.ts';

interface Run {
  part: 'capacity' | 'load';
  config: string;
  n: number;
  wallMs: number;
  peakDecodeRows: number;
  peakRunning: number;
  /** Requests that had their first token before any request finished. */
  startedBeforeFirstFinish: number;
  preemptions: number;
  peakPages: number;
  pagesTotal: number;
  tokPerS: number;
  ttftP50Ms: number;
  freedPages: number;
  compressMs: number;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const model = opts.model ?? '/models/stories260K';
  const n = Number(opts.n ?? 16);
  const promptLen = Number(opts.prompt ?? 400);
  const maxTokens = Number(opts['max-tokens'] ?? 64);
  const pages = Number(opts.pages ?? 64);
  const pageSize = Number(opts['page-size'] ?? 16);
  const configs = (opts.configs ?? 'none,snapkv@0.5,snapkv@0.75,knorm@0.5,knorm@0.75').split(',');
  const loadN = Number(opts['load-n'] ?? 24);
  const loadRate = Number(opts['load-rate'] ?? 8);
  const loadConfigs = (opts['load-configs'] ?? 'none,snapkv@0.5,knorm@0.5,streaming-llm@0.5').split(',');
  const loadRepeats = Number(opts['load-repeats'] ?? 3);
  // a pool the uncompressed load outgrows: 400 + 64 tokens hold 29 pages, so ~7 fit, while at ratio 0.5
  // (~17 pages) the ~10 that the token budget lets decode together fit; 0 = the default 64 MiB pool
  const loadPages = Number(opts['load-pages'] ?? 200);
  for (const [k, v] of Object.entries({ n, promptLen, maxTokens, pages, pageSize, loadN, loadRepeats })) if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} must be a positive integer, got ${v}`);
  configs.concat(loadConfigs).forEach(parseConfig);
  const runs: Run[] = [];
  const t0 = performance.now();

  // (a) capacity of a small fixed pool
  const small = await Engine.load(gpu, model, { kvPages: pages, pageSize });
  let prompts: StoryPrompt[];
  try {
    prompts = storyPrompts(small, 8, [promptLen]);
    log(`(a) pool ${pages} pages × ${pageSize} tokens; ${n} requests of ${promptLen} prompt + ${maxTokens} new tokens (${Math.ceil((promptLen + maxTokens) / pageSize)} pages each uncompressed)`);
    await Promise.all([0, 1].map((k) => small.generate(prompts[k].ids, { maxTokens: 2, ignoreEos: true, compression: { press: k ? 'snapkv' : 'knorm', ratio: 0.5 } }))); // compile
    for (const config of configs) {
      const r = await burst(small, prompts, n, maxTokens, config);
      runs.push(r);
      log(`(a) ${config}: peak ${r.peakDecodeRows} decoding together, ${r.peakRunning} running, ${r.preemptions} preemptions, peak ${r.peakPages}/${r.pagesTotal} pages, ${(r.wallMs / 1000).toFixed(1)} s (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    await small.destroy();
  }

  // (b) the concurrency workload on a pool of loadPages (or the default pool)
  const big = await Engine.load(gpu, model, { pageSize, prefixCache: false, ...(loadPages > 0 ? { kvPages: loadPages } : {}) });
  let mu = 0;
  try {
    const loadPrompts = storyPrompts(big, loadN, [promptLen]);
    await big.generate(prompts[0].ids, { maxTokens: 2, ignoreEos: true, compression: { press: 'snapkv', ratio: 0.5 } });
    const alone: number[] = [];
    for (let k = 0; k < 3; k++) {
      const t = performance.now();
      await big.generate(prompts[k].ids, { maxTokens, ignoreEos: true });
      alone.push(performance.now() - t);
    }
    mu = 1000 / (alone.reduce((a, b) => a + b, 0) / alone.length);
    const rate = loadRate * mu;
    log(`(b) service rate alone μ = ${mu.toFixed(2)} req/s; ${loadN} requests at ${rate.toFixed(2)} req/s, even arrivals`);
    for (let rep = 0; rep < loadRepeats; rep++) for (const config of loadConfigs) {
      const r = await arrivals(big, loadPrompts, loadN, maxTokens, config, rate);
      runs.push(r);
      log(`(b) ${config} #${rep + 1}: ${r.tokPerS.toFixed(1)} tok/s, peak ${r.peakPages} pages, peak ${r.peakDecodeRows} decoding together, TTFT p50 ${r.ttftP50Ms.toFixed(0)} ms (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    await big.destroy();
  }
  const loadPool = loadPages > 0 ? `pool of ${loadPages} pages` : 'default pool (64 MiB)';
  return report(runs, { model, n, promptLen, maxTokens, pages, pageSize, loadN, loadRate, mu, loadPool });
}

function parseConfig(s: string): CompressionOptions | null {
  if (s === 'none') return null;
  const [press, ratio] = s.split('@');
  const r = Number(ratio);
  if (!press || !(r >= 0 && r < 1)) throw new Error(`config '${s}' is not 'none' or press@ratio`);
  return { press, ratio: r };
}

/** Watches one phase: peaks per step, first tokens and finishes. */
function observe(engine: Engine) {
  const o = { peakDecodeRows: 0, peakRunning: 0, startedBeforeFirstFinish: 0, anyFinished: false, firsts: new Set<string>() };
  const off = engine.on((e: EngineEvent) => {
    if (e.kind === 'step') {
      o.peakDecodeRows = Math.max(o.peakDecodeRows, e.decode);
      o.peakRunning = Math.max(o.peakRunning, engine.snapshot().requestsRunning);
    } else if (e.kind === 'request-finished') o.anyFinished = true;
  });
  const onToken = (id: string) => {
    if (o.firsts.has(id)) return;
    o.firsts.add(id);
    if (!o.anyFinished) o.startedBeforeFirstFinish++;
  };
  return { o, off, onToken };
}

async function burst(engine: Engine, prompts: StoryPrompt[], n: number, maxTokens: number, config: string): Promise<Run> {
  const compression = parseConfig(config);
  engine.resetStats();
  const before = engine.snapshot();
  const w = observe(engine);
  const t = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => {
    const id = `cap-${config}-${i}`;
    return engine.generate(prompts[i % prompts.length].ids, { maxTokens, ignoreEos: true, requestId: id, onToken: () => w.onToken(id), ...(compression ? { compression } : {}) });
  }));
  const wallMs = performance.now() - t;
  w.off();
  return summary('capacity', config, engine, before, w.o, wallMs, results.map((r) => r.timing.ttftMs), n * maxTokens);
}

async function arrivals(engine: Engine, prompts: StoryPrompt[], n: number, maxTokens: number, config: string, rate: number): Promise<Run> {
  const compression = parseConfig(config);
  engine.resetStats();
  const before = engine.snapshot();
  const w = observe(engine);
  const t = performance.now();
  const pending = [];
  for (let i = 0; i < n; i++) {
    const at = t + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const id = `load-${config}-${i}`;
    pending.push(engine.generate(prompts[i % prompts.length].ids, { maxTokens, ignoreEos: true, requestId: id, onToken: () => w.onToken(id), ...(compression ? { compression } : {}) }));
  }
  const results = await Promise.all(pending);
  const wallMs = performance.now() - t;
  w.off();
  return summary('load', config, engine, before, w.o, wallMs, results.map((r) => r.timing.ttftMs), n * maxTokens);
}

function summary(part: Run['part'], config: string, engine: Engine, before: EngineStats, o: ReturnType<typeof observe>['o'], wallMs: number, ttfts: number[], tokens: number): Run {
  const s = engine.snapshot();
  const sorted = [...ttfts].sort((a, b) => a - b);
  return {
    part, config, n: ttfts.length, wallMs,
    peakDecodeRows: o.peakDecodeRows, peakRunning: o.peakRunning, startedBeforeFirstFinish: o.startedBeforeFirstFinish,
    preemptions: s.preemptions - before.preemptions,
    peakPages: s.pool.peakPagesInUse, pagesTotal: s.pool.pagesTotal,
    tokPerS: (tokens * 1000) / wallMs,
    ttftP50Ms: sorted[Math.floor((sorted.length - 1) / 2)],
    freedPages: s.compression.freedPages - before.compression.freedPages,
    compressMs: s.compression.ms - before.compression.ms,
  };
}

function report(runs: Run[], p: { model: string; n: number; promptLen: number; maxTokens: number; pages: number; pageSize: number; loadN: number; loadRate: number; mu: number; loadPool: string }): BenchResult {
  const cap = runs.filter((r) => r.part === 'capacity'), load = runs.filter((r) => r.part === 'load');
  const ratio = (xs: Run[], f: (r: Run) => number) => xs.slice(1).map((r) => `${r.config}: ${(f(r) / f(xs[0])).toFixed(2)} ×`).join(', ');
  const bar = (title: string, yLabel: string, xs: Run[], f: (r: Run) => number): PlotSpec => ({ title, kind: 'bar', xLabel: 'compression', yLabel, series: [{ name: 'measured', points: xs.map((r) => ({ x: r.config, y: f(r) })) }] });
  // (b) runs each config several times in turn: one bar series per repeat, ratios of the means, with each repeat's ratio
  const loadConfigs = [...new Set(load.map((r) => r.config))];
  const reps = (config: string) => load.filter((r) => r.config === config);
  const mean = (xs: Run[], f: (r: Run) => number) => xs.reduce((a, r) => a + f(r), 0) / xs.length;
  const loadRatio = (f: (r: Run) => number) => loadConfigs.slice(1).map((c) => {
    const base = reps(loadConfigs[0]);
    const each = reps(c).map((r, i) => (f(r) / f(base[i] ?? base[0])).toFixed(2)).join(' / ');
    return `${c}: ${(mean(reps(c), f) / mean(base, f)).toFixed(2)} × (per repeat ${each})`;
  }).join(', ');
  const loadBar = (title: string, yLabel: string, f: (r: Run) => number): PlotSpec => ({
    title, kind: 'bar', xLabel: 'compression', yLabel,
    series: reps(loadConfigs[0]).map((_, i) => ({ name: `repeat ${i + 1}`, points: loadConfigs.flatMap((c) => reps(c)[i] ? [{ x: c, y: f(reps(c)[i]) }] : []) })),
  });
  return {
    name: 'memory',
    data: { ...p, runs },
    table: {
      headers: ['part', 'compression', 'requests', 'peak decoding together', 'peak running', 'first token before any finished', 'preemptions', 'peak pages', 'pool pages', 'freed by compression', 'compress ms (total)', 'TTFT p50 (ms)', 'tok/s', 'wall (s)'],
      rows: runs.map((r) => [r.part, r.config, ...[r.n, r.peakDecodeRows, r.peakRunning, r.startedBeforeFirstFinish, r.preemptions, r.peakPages, r.pagesTotal, r.freedPages].map(String), r.compressMs.toFixed(0), r.ttftP50Ms.toFixed(0), r.tokPerS.toFixed(1), (r.wallMs / 1000).toFixed(1)]),
    },
    plots: [
      bar(`(a) Requests decoding together in a ${p.pages}-page pool`, 'peak decode rows in one step', cap, (r) => r.peakDecodeRows),
      bar(`(a) Throughput, ${p.n} requests at once, ${p.pages}-page pool`, 'output tok/s', cap, (r) => r.tokPerS),
      loadBar(`(b) Peak KV pages, ${p.loadN} requests at ${p.loadRate} μ (${p.loadPool})`, 'peak pages in use', (r) => r.peakPages),
      loadBar(`(b) Throughput, ${p.loadN} requests at ${p.loadRate} μ`, 'output tok/s', (r) => r.tokPerS),
    ],
    notes: [
      `(a) capacity: ${p.model}, pool of ${p.pages} pages × ${p.pageSize} tokens; ${p.n} requests submitted at once, ${p.promptLen}-token story prompts, max_tokens ${p.maxTokens}, greedy, ignore_eos; an uncompressed request needs ${Math.ceil((p.promptLen + p.maxTokens) / p.pageSize)} pages`,
      `(a) ratios vs none — peak decoding together: ${ratio(cap, (r) => r.peakDecodeRows)}; throughput: ${ratio(cap, (r) => r.tokPerS)}; wall time: ${ratio(cap, (r) => r.wallMs)}`,
      `(b) load: ${p.loadN} requests with distinct ${p.promptLen}-token prompts, max_tokens ${p.maxTokens}, even arrivals at ${p.loadRate} × μ = ${(p.loadRate * p.mu).toFixed(2)} req/s (μ = ${p.mu.toFixed(2)} req/s, one request alone), ${p.loadPool}, prefix cache off; ${reps(loadConfigs[0]).length} repeats of the configs in turn`,
      `(b) ratios vs ${loadConfigs[0]} (means over repeats) — peak pages: ${loadRatio((r) => r.peakPages)}; throughput: ${loadRatio((r) => r.tokPerS)}; TTFT p50: ${loadRatio((r) => r.ttftP50Ms)}`,
      'peak decoding together: most decode rows in one engine step (requests past prefill and compression, holding their KV at once); peak running: max stats().requestsRunning sampled at each step (includes requests still in prefill); first token before any finished: requests that started producing before the first completion',
      'peak pages: stats().pool.peakPagesInUse after resetStats(); preemptions: stats().preemptions delta; tok/s: output tokens / wall time (first submit → last completion); in-process Engine on the page thread, same model and prompts for every row',
      'admission is by free pages for the whole uncompressed prompt (pages are freed only after prefill + compression), so compression raises how many decode together, not how many prompts may prefill at once',
    ],
  };
}
