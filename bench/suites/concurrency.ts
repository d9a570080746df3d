/**
 * FastCache's concurrency test, in the browser: N requests arrive at R req/s
 * (evenly spaced, as FastCache's harness sends them, or as a seeded Poisson
 * process) and are served either
 *
 *   baseline  — one at a time to completion, in arrival order: a request that
 *               arrives while another runs waits in a page-side FIFO (a plain
 *               per-request generate loop), or
 *   scheduler — each sent at its arrival time; the engine batches them.
 *
 * Both use the same engine Worker, model, prompts and seed, in one session.
 * TTFT runs on the page clock from the request's scheduled arrival to its
 * first streamed chunk reaching the page; FastCache's own figure (arrival →
 * end of prefill) is reported beside it. Default rates are multiples of the
 * baseline's service rate μ = 1 / (mean time of one request alone), measured
 * first, so the sweep always straddles the baseline's saturation.
 *
 * options: --model /models/stories260K  --n 24 (requests per run)
 *          --rates 1,2,4 (req/s; default μ × 0.5,1,2,4,8)  --max-tokens 32
 *          --arrivals even,poisson  --seed 1
 *          --press snapkv --ratio 0.5: every run also with that KV compression on every
 *          request (FastCache's testcon --compression_method / --compression_ratio), reported
 *          beside the same runs with it off, in the same session
 */
import { WorkerEngine } from '../../src/worker/client.ts';
import { DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../src/scheduler/scheduler.ts';
import type { EngineStats, RequestMetrics } from '../../src/scheduler/metrics.ts';
import { loadTokenizer, type Tokenizer } from '../../src/model/tokenizer.ts';
import { resolveSource } from '../../src/model/source.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import type { CompressionOptions } from '../../src/api/chat-types.ts';
import { mulberry32 } from '../rng.ts';

type System = 'baseline' | 'scheduler';
/** KV compression on every request of a run, or not. */
type Kv = 'off' | 'on';
type Arrivals = 'even' | 'poisson';

/** Prompt lengths (tokens, BOS included) of the fixed set; requests draw from it uniformly. */
const TARGET_LENGTHS = [8, 16, 24, 40, 64, 96, 128, 160, 200];
/** Default sweep, as multiples of the baseline's service rate μ. */
const RATE_MULTIPLES = [0.5, 1, 2, 4, 8];

const STORY = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. One day, she saw a big dog under a tree. The dog was sad because he was lost. Lily wanted to help him find his home. She walked with the dog down the street and asked everyone she met if they knew him. An old man said, "I know that dog! He lives by the blue house near the pond." Lily was very happy. She took the dog to the blue house and knocked on the door. A boy opened the door and smiled. "Max! You came back!" he said. The boy hugged his dog and thanked Lily. From that day on, Lily and the boy were best friends, and they played with Max in the park every day. Tom was a small bird who lived in a tall tree. He liked to sing songs in the morning when the sun came up. One day, a strong wind came and shook the tree. Tom was scared and flew down to the ground. There he met a kind frog named Ben. Ben said, "Do not be afraid, Tom. The wind will stop soon." They sat together by the pond and watched the leaves fly. When the wind stopped, Tom flew back to his tree and sang a new song about his friend Ben. Every morning after that, Ben came to the tree to listen. Sue had a little boat that she liked to push in the bath. Her mom told her that boats can go very far on the sea. Sue wanted to see the sea, so her dad took her to the beach. The water was big and blue, and the sand was warm. Sue put her boat in the water and watched it float. A small wave came and took the boat away. Sue was sad, but then a nice girl swam out and brought it back. Sue said thank you and shared her apple with the girl. They built a big sand castle together until the sun went down.`;

interface Prompt {
  text: string;
  tokens: number;
}

/** One request of one run; times in ms on the page clock, relative to the run's start. */
interface Sample {
  i: number;
  prompt: number;
  promptTokens: number;
  completionTokens: number;
  arrivalMs: number; //  scheduled arrival
  sentMs: number; //     create() called (baseline: after the FIFO wait)
  firstMs: number; //    first streamed chunk reached the page
  doneMs: number; //     last chunk reached the page
  ttftMs: number; //     arrival → first chunk on the page
  prefillTtftMs: number; // FastCache's: arrival → end of prefill (page wait + Worker-measured)
  worker: RequestMetrics; // usage.extra, measured in the Worker from its receipt
}

interface RunSummary {
  arrivals: Arrivals;
  rate: number;
  rateOverMu: number;
  system: System;
  kv: Kv;
  n: number;
  wallMs: number;
  ttft: { p50: number; p90: number; p99: number; mean: number };
  prefillTtftP50: number;
  workerPrefillTtftP50: number;
  tpotP50: number;
  tokPerS: number;
  reqPerS: number;
  peakPages: number;
  meanDecodeRows: number;
  meanPrefillTokens: number;
  steps: number;
  maxSendLateMs: number;
}

interface Setup {
  engine: WorkerEngine;
  prompts: Prompt[];
  maxTokens: number;
  seed: number;
  log: (s: string) => void;
  /** The press of the 'on' runs (null: no --press, only 'off' runs). */
  press: CompressionOptions | null;
}

export async function run(_gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const model = opts.model ?? '/models/stories260K';
  const n = Number(opts.n ?? 24);
  const maxTokens = Number(opts['max-tokens'] ?? 32);
  const seed = Number(opts.seed ?? 1);
  const arrivalKinds = (opts.arrivals ?? 'even,poisson').split(',') as Arrivals[];
  if (!(Number.isInteger(n) && n >= 1 && Number.isInteger(maxTokens) && maxTokens >= 1)) throw new Error(`--n and --max-tokens must be positive integers, got ${opts.n} and ${opts['max-tokens']}`);
  for (const a of arrivalKinds) if (a !== 'even' && a !== 'poisson') throw new Error(`unknown arrival process '${a}'; use even and/or poisson`);
  const scheduler: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG };
  const press = pressOption(opts);

  const t0 = performance.now();
  const engine = WorkerEngine.create();
  try {
    const info = await engine.load(model, { scheduler });
    log(`loaded ${info.modelId} (${info.architecture}, ${info.parameters} params) on ${info.adapter}; ${info.kvPages} KV pages of ${info.pageSize} tokens`);
    const prompts = buildPrompts(await loadTokenizer(resolveSource(model)));
    log(`prompt set: ${prompts.map((p) => p.tokens).join(', ')} tokens; max_tokens ${maxTokens}, greedy, ignore_eos`);
    const s: Setup = { engine, prompts, maxTokens, seed, log, press };
    await warmUp(s);
    const alone = await calibrate(s);
    const mu = 1000 / alone.meanMs;
    log(`baseline alone: ${alone.meanMs.toFixed(0)} ms per request (mean over the prompt set) → service rate μ = ${mu.toFixed(2)} req/s`);
    const probe = await batchProbe(s);
    log(`decode step vs batch: ${probe.map((p) => `${p.rows} rows ${p.stepMs.toFixed(1)} ms`).join(', ')}`);
    const rates = opts.rates ? opts.rates.split(',').map(Number) : RATE_MULTIPLES.map((m) => round2(m * mu));
    if (rates.some((r) => !(r > 0))) throw new Error(`--rates must be positive numbers, got '${opts.rates}'`);

    const runs: { summary: RunSummary; samples: Sample[] }[] = [];
    for (const arrivals of arrivalKinds) {
      const draws = drawRequests(n, prompts.length, seed, arrivals);
      for (const rate of rates) {
        for (const kv of kvModes(s)) for (const system of ['baseline', 'scheduler'] as const) {
          const r = await runOnce(s, system, kv, arrivals, rate, draws);
          r.summary.rateOverMu = r.summary.rate / mu;
          runs.push(r);
          const m = r.summary;
          log(`${arrivals} R=${rate} ${system}${kv === 'on' ? ` + ${pressName(s.press)}` : ''}: TTFT p50 ${m.ttft.p50.toFixed(0)} ms p99 ${m.ttft.p99.toFixed(0)} ms, ${m.tokPerS.toFixed(1)} tok/s, ${m.reqPerS.toFixed(2)} req/s, peak ${m.peakPages} pages, mean decode rows ${m.meanDecodeRows.toFixed(1)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
        }
      }
    }
    return report({ model, info, n, maxTokens, seed, scheduler, prompts, alone, mu, probe, rates, arrivalKinds, runs, press });
  } finally {
    engine.terminate();
  }
}

/** --press / --ratio: the compression of the 'on' runs; checked here, the press name by the engine's first request. */
function pressOption(opts: Record<string, string>): CompressionOptions | null {
  if (opts.press === undefined && opts.ratio === undefined) return null;
  if (!opts.press || opts.press === 'true') throw new Error('--ratio needs --press <name> (e.g. --press snapkv --ratio 0.5)');
  const ratio = Number(opts.ratio ?? 0.5);
  if (!(ratio > 0 && ratio < 1)) throw new Error(`--ratio must be in (0, 1), got ${opts.ratio}`);
  return { press: opts.press, ratio };
}

function kvModes(s: Setup): Kv[] {
  return s.press ? ['off', 'on'] : ['off'];
}

function pressName(p: CompressionOptions | null): string {
  return p ? `${p.press}@${p.ratio}` : 'none';
}

// ---------------------------------------------------------------- workload

/** Prompts of the target lengths, each from a different point of the story so no two share a prefix. */
function buildPrompts(tok: Tokenizer): Prompt[] {
  const words = STORY.split(/\s+/);
  return TARGET_LENGTHS.map((target, k) => {
    const start = Math.floor((k * words.length) / TARGET_LENGTHS.length);
    let text = '';
    for (let w = 0; w < words.length; w++) {
      const next = (text ? text + ' ' : '') + words[(start + w) % words.length];
      if (tok.encode(next).length > target && text) break;
      text = next;
    }
    return { text, tokens: tok.encode(text).length };
  });
}

/**
 * Which prompt each request carries, and its arrival offset in units of 1/R (so
 * every rate sees the same pattern). Poisson gaps are scaled to span n − 1 units,
 * as the even schedule does: a Poisson process conditioned on its n-th arrival
 * time, so both processes offer the same mean rate R and differ only in bunching.
 */
function drawRequests(n: number, numPrompts: number, seed: number, arrivals: Arrivals): { prompt: number; at: number }[] {
  const pick = mulberry32(seed);
  const next = mulberry32(seed * 7919 + 17);
  const gaps = Array.from({ length: n - 1 }, () => (arrivals === 'even' ? 1 : -Math.log(1 - next())));
  const scale = gaps.length ? (n - 1) / gaps.reduce((a, b) => a + b, 0) : 1;
  let at = 0;
  return Array.from({ length: n }, (_, i) => {
    if (i > 0) at += gaps[i - 1] * scale;
    return { prompt: Math.floor(pick() * numPrompts), at };
  });
}

/** Compiles every pipeline on both paths (alone and batched) before anything is timed. */
async function warmUp(s: Setup): Promise<void> {
  const last = s.prompts.length - 1;
  await send(s, 0, 'warm-a', 0);
  await send(s, last, 'warm-b', 0);
  await Promise.all(s.prompts.map((_, k) => send(s, k, `warm-c${k}`, 0)));
  s.log('warmed up');
}

/** Each prompt alone, twice: the mean time per request a plain loop needs. */
async function calibrate(s: Setup): Promise<{ meanMs: number; perPrompt: { tokens: number; e2eMs: number; ttftMs: number }[] }> {
  const perPrompt: { tokens: number; e2eMs: number; ttftMs: number }[] = [];
  for (let k = 0; k < s.prompts.length; k++) {
    const ms: number[] = [];
    const tt: number[] = [];
    for (let rep = 0; rep < 2; rep++) {
      const t = performance.now();
      const r = await send(s, k, `alone-${k}-${rep}`, t);
      ms.push(r.doneMs - t);
      tt.push(r.ttftMs);
    }
    perPrompt.push({ tokens: s.prompts[k].tokens, e2eMs: mean(ms), ttftMs: mean(tt) });
  }
  return { meanMs: mean(perPrompt.map((p) => p.e2eMs)), perPrompt };
}

/**
 * What one decode step costs with k rows: k copies of the shortest prompt sent
 * together; the Worker's TPOT of each is then the time of a step with ~k decode rows.
 */
async function batchProbe(s: Setup): Promise<{ rows: number; stepMs: number; tokPerS: number }[]> {
  const out: { rows: number; stepMs: number; tokPerS: number }[] = [];
  for (const k of [1, 2, 4, 8, 16]) {
    let stepMs = Infinity; // best of two rounds: other processes on the machine only ever add time
    for (let round = 0; round < 2; round++) {
      const rs = await Promise.all(Array.from({ length: k }, (_, j) => send(s, 0, `probe-${k}-${round}-${j}`, performance.now())));
      stepMs = Math.min(stepMs, pct(rs.map((r) => r.worker.tpotMs), 50));
    }
    out.push({ rows: k, stepMs, tokPerS: (k * 1000) / stepMs });
  }
  return out;
}

// ---------------------------------------------------------------- one run

async function runOnce(s: Setup, system: System, kv: Kv, arrivals: Arrivals, rate: number, draws: { prompt: number; at: number }[]): Promise<{ summary: RunSummary; samples: Sample[] }> {
  const compression = kv === 'on' ? s.press : null;
  await s.engine.resetStats();
  const before = await s.engine.stats();
  const start = performance.now() + 10;
  const arrivalAt = draws.map((d) => start + (d.at * 1000) / rate);
  const tag = `${system}-${kv}-${arrivals}-${rate}`;
  const raw: Omit<Sample, 'i' | 'prompt'>[] = [];
  if (system === 'baseline') {
    for (let i = 0; i < draws.length; i++) {
      await sleepUntil(arrivalAt[i]);
      raw.push(await send(s, draws[i].prompt, `${tag}-${i}`, arrivalAt[i], compression));
    }
  } else {
    const pending: Promise<Omit<Sample, 'i' | 'prompt'>>[] = [];
    for (let i = 0; i < draws.length; i++) {
      await sleepUntil(arrivalAt[i]);
      pending.push(send(s, draws[i].prompt, `${tag}-${i}`, arrivalAt[i], compression));
    }
    raw.push(...(await Promise.all(pending)));
  }
  const stats = await s.engine.stats();
  const rel = (t: number) => t - start;
  const samples: Sample[] = raw.map((r, i) => ({
    ...r, i, prompt: draws[i].prompt, arrivalMs: rel(r.arrivalMs), sentMs: rel(r.sentMs), firstMs: rel(r.firstMs), doneMs: rel(r.doneMs),
  }));
  return { summary: summarize(system, kv, arrivals, rate, samples, before, stats), samples };
}

/** One streamed request; absolute page-clock times, TTFT from `arrival`. */
async function send(s: Setup, prompt: number, id: string, arrival: number, compression: CompressionOptions | null = null): Promise<Omit<Sample, 'i' | 'prompt'>> {
  const sent = performance.now();
  const stream = await s.engine.chat.completions.create({
    messages: [{ role: 'user', content: s.prompts[prompt].text }],
    stream: true, max_tokens: s.maxTokens, temperature: 0, seed: s.seed, ignore_eos: true, request_id: id,
    ...(compression ? { kv_compression: compression } : {}),
  });
  let first: number | null = null;
  let usage: { prompt_tokens: number; completion_tokens: number; extra: RequestMetrics } | undefined;
  for await (const c of stream) {
    first ??= performance.now();
    if (c.usage) usage = c.usage;
  }
  const done = performance.now();
  if (!usage || first === null) throw new Error(`request ${id} ended without a final usage chunk`);
  if (usage.completion_tokens !== s.maxTokens) throw new Error(`request ${id} produced ${usage.completion_tokens} tokens, expected ${s.maxTokens} (ignore_eos)`);
  return {
    promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens,
    arrivalMs: arrival, sentMs: sent, firstMs: first, doneMs: done,
    ttftMs: first - arrival, prefillTtftMs: sent - arrival + usage.extra.prefillTtftMs, worker: usage.extra,
  };
}

/** `before`/`after`: engine stats around the run (step counts are cumulative; the page-pool peak was reset). */
function summarize(system: System, kv: Kv, arrivals: Arrivals, rate: number, xs: Sample[], before: EngineStats, after: EngineStats): RunSummary {
  const wallMs = Math.max(...xs.map((x) => x.doneMs)) - Math.min(...xs.map((x) => x.arrivalMs));
  const ttft = xs.map((x) => x.ttftMs);
  const tokens = xs.reduce((n, x) => n + x.completionTokens, 0);
  const steps = after.steps - before.steps;
  const perStep = (f: (st: EngineStats) => number) => (f(after) * after.steps - f(before) * before.steps) / steps;
  return {
    arrivals, rate, rateOverMu: 0, system, kv, n: xs.length, wallMs,
    ttft: { p50: pct(ttft, 50), p90: pct(ttft, 90), p99: pct(ttft, 99), mean: mean(ttft) },
    prefillTtftP50: pct(xs.map((x) => x.prefillTtftMs), 50),
    workerPrefillTtftP50: pct(xs.map((x) => x.worker.prefillTtftMs), 50),
    tpotP50: pct(xs.map((x) => x.worker.tpotMs), 50),
    tokPerS: (tokens * 1000) / wallMs,
    reqPerS: (xs.length * 1000) / wallMs,
    peakPages: after.pool.peakPagesInUse,
    meanDecodeRows: perStep((st) => st.meanBatch.decodeRows),
    meanPrefillTokens: perStep((st) => st.meanBatch.prefillTokens),
    steps,
    maxSendLateMs: system === 'scheduler' ? Math.max(...xs.map((x) => x.sentMs - x.arrivalMs)) : 0,
  };
}

// ---------------------------------------------------------------- report

interface Ratio {
  arrivals: Arrivals;
  rate: number;
  ttftP50Ratio: number;
  ttftP99Ratio: number;
  throughputRatio: number;
}

interface Report {
  model: string;
  info: unknown;
  n: number;
  maxTokens: number;
  seed: number;
  scheduler: SchedulerConfig;
  prompts: Prompt[];
  alone: { meanMs: number; perPrompt: unknown[] };
  mu: number;
  probe: { rows: number; stepMs: number; tokPerS: number }[];
  rates: number[];
  arrivalKinds: Arrivals[];
  runs: { summary: RunSummary; samples: Sample[] }[];
  press: CompressionOptions | null;
}

/** A system with compression on vs the same system with it off, at one rate. */
interface KvRatio {
  arrivals: Arrivals;
  rate: number;
  system: System;
  ttftP50Ratio: number;
  throughputRatio: number;
  peakPagesRatio: number;
}

function report(r: Report): BenchResult {
  const sums = r.runs.map((x) => x.summary);
  const find = (a: Arrivals, rate: number, sys: System, kv: Kv = 'off') => sums.find((x) => x.arrivals === a && x.rate === rate && x.system === sys && x.kv === kv)!;
  // the saturating rate: the swept rate nearest the baseline's service rate μ, not below 0.95 μ
  const near = r.rates.filter((x) => x >= r.mu * 0.95).sort((a, b) => Math.abs(Math.log(a / r.mu)) - Math.abs(Math.log(b / r.mu)));
  const satRate = near[0] ?? Math.max(...r.rates);
  const topRate = Math.max(...r.rates);
  const ratio = (a: Arrivals, rate: number): Ratio => {
    const b = find(a, rate, 'baseline'), s = find(a, rate, 'scheduler');
    return { arrivals: a, rate, ttftP50Ratio: s.ttft.p50 / b.ttft.p50, ttftP99Ratio: s.ttft.p99 / b.ttft.p99, throughputRatio: s.tokPerS / b.tokPerS };
  };
  const ratios = r.arrivalKinds.map((a) => ratio(a, satRate));
  const topRatios = topRate === satRate ? [] : r.arrivalKinds.map((a) => ratio(a, topRate));
  const kvRatios: KvRatio[] = !r.press ? [] : r.arrivalKinds.flatMap((a) => [...new Set([satRate, topRate])].flatMap((rate) => (['baseline', 'scheduler'] as const).map((system): KvRatio => {
    const off = find(a, rate, system), on = find(a, rate, system, 'on');
    return { arrivals: a, rate, system, ttftP50Ratio: on.ttft.p50 / off.ttft.p50, throughputRatio: on.tokPerS / off.tokPerS, peakPagesRatio: on.peakPages / off.peakPages };
  })));
  const rows = sums.map((x) => [
    x.arrivals, x.rate, `${x.rateOverMu.toFixed(2)}`, x.system, x.kv === 'on' ? pressName(r.press) : 'none', x.ttft.p50, x.ttft.p90, x.ttft.p99, x.prefillTtftP50, x.tpotP50, x.tokPerS, x.reqPerS, x.peakPages, x.meanDecodeRows,
  ]);
  const systems = kvModes({ press: r.press } as Setup).flatMap((kv) => (['baseline', 'scheduler'] as const).map((sys) => ({ sys, kv, name: kv === 'on' ? `${sys} + ${pressName(r.press)}` : sys })));
  const series = (a: Arrivals, f: (x: RunSummary) => number) =>
    systems.map(({ sys, kv, name }) => ({ name, points: r.rates.map((rate) => ({ x: String(rate), y: f(find(a, rate, sys, kv)) })) }));
  // one column per arrival process: TTFT on the first row, throughput on the second
  const plots: PlotSpec[] = [
    ...r.arrivalKinds.map((a): PlotSpec => ({ title: `TTFT p50 vs arrival rate (${a} arrivals)`, kind: 'bar', xLabel: `arrival rate R (req/s); baseline service rate μ = ${r.mu.toFixed(2)}`, yLabel: 'TTFT p50 (ms, log scale)', logY: true, series: series(a, (x) => x.ttft.p50) })),
    ...r.arrivalKinds.map((a): PlotSpec => ({ title: `Throughput vs arrival rate (${a} arrivals)`, kind: 'bar', xLabel: 'arrival rate R (req/s)', yLabel: 'output tokens / s', series: series(a, (x) => x.tokPerS) })),
  ];
  return {
    name: 'concurrency',
    data: {
      model: r.model, loaded: r.info, n: r.n, maxTokens: r.maxTokens, seed: r.seed, scheduler: r.scheduler,
      prompts: r.prompts, alone: r.alone, serviceRateMu: r.mu, decodeStepVsBatch: r.probe, rates: r.rates, saturatingRate: satRate, ratios, topRatios, press: r.press, kvRatios,
      runs: r.runs,
    },
    table: {
      headers: ['arrivals', 'R (req/s)', 'R/μ', 'system', 'KV compression', 'TTFT p50 (ms)', 'TTFT p90', 'TTFT p99', 'prefill-TTFT p50 (ms)†', 'TPOT p50 (ms)‡', 'tok/s', 'req/s', 'peak KV pages', 'mean decode rows/step'],
      rows,
    },
    plots,
    notes: [...notes(r, [...ratios, ...topRatios]), ...kvNotes(r, kvRatios)],
  };
}

function notes(r: Report, ratios: Ratio[]): string[] {
  const c = r.scheduler;
  return [
    ...ratios.map((q) => `at R = ${q.rate} req/s (${(q.rate / r.mu).toFixed(2)} μ${q.rate === ratios[0].rate ? ', the saturating rate' : ', the top rate'}), ${q.arrivals} arrivals: scheduler TTFT p50 = ${q.ttftP50Ratio.toFixed(3)} × baseline (p99 ${q.ttftP99Ratio.toFixed(3)} ×), scheduler throughput = ${q.throughputRatio.toFixed(2)} × baseline — same browser session, model, prompts and seed`),
    `baseline service rate μ = 1 / ${r.alone.meanMs.toFixed(0)} ms = ${r.mu.toFixed(2)} req/s (each prompt of the set run alone twice, mean end-to-end time on the page)`,
    `decode step time vs batch (k copies of the ${r.prompts[0].tokens}-token prompt sent together; Worker TPOT p50): ${r.probe.map((p) => `${p.rows} → ${p.stepMs.toFixed(1)} ms (${p.tokPerS.toFixed(0)} tok/s)`).join(', ')}`,
    costNote(r),
    `arrivals: even = one every 1/R s; poisson = seeded exponential gaps scaled so the ${r.n} arrivals span (n − 1)/R s like the even ones (a Poisson process conditioned on its last arrival time): same mean rate, bunched`,
    `${r.n} requests per run; prompts drawn (seed ${r.seed}) from ${r.prompts.length} story excerpts of ${r.prompts.map((p) => p.tokens).join('/')} tokens; max_tokens ${r.maxTokens}, ignore_eos, greedy (temperature 0)`,
    'TTFT: from the request\'s scheduled arrival on the page clock to its first streamed chunk reaching the page (baseline: includes its wait in the page-side FIFO)',
    '† prefill-TTFT is FastCache\'s figure (arrival → end of prefill): usage.extra.prefillTtftMs, measured inside the Worker from the Worker\'s receipt of the request, plus the page-side wait before sending (baseline FIFO wait; scheduler timer lateness); it leaves out the trip of the first token back to the page',
    '‡ TPOT: usage.extra.tpotMs, measured in the Worker (mean time per output token after the first)',
    'throughput: output tokens (and requests) over the run\'s wall time, first arrival → last completion on the page; peak KV pages: stats().pool.peakPagesInUse after resetStats() at the start of each run',
    `scheduler knobs (defaults): maxBatchTokens ${c.maxBatchTokens}, maxSampledRows ${c.maxSampledRows}, maxPrefillChunk ${c.maxPrefillChunk}, maxRunning ${c.maxRunning}, maxCompressBatch ${c.maxCompressBatch}, admissionReservePages ${c.admissionReservePages}`,
  ];
}

function kvNotes(r: Report, ks: KvRatio[]): string[] {
  if (!r.press) return [];
  return [
    ...ks.map((k) => `${pressName(r.press)} on vs off, ${k.system}, R = ${k.rate} req/s (${(k.rate / r.mu).toFixed(2)} μ), ${k.arrivals}: TTFT p50 ${k.ttftP50Ratio.toFixed(3)} ×, throughput ${k.throughputRatio.toFixed(2)} ×, peak KV pages ${k.peakPagesRatio.toFixed(2)} ×`),
    `compression runs: kv_compression ${JSON.stringify(r.press)} on every request (the compress stage runs after each prefill), the same arrivals, prompts and seed as the runs without it, in the same session; μ and the rates come from the uncompressed baseline`,
  ];
}

/** Where a step's time goes on this adapter: a fixed part per step, and a part per row (decode row or prompt token). */
function costNote(r: Report): string {
  const p1 = r.probe[0], pk = r.probe[r.probe.length - 1];
  const perRow = (pk.stepMs - p1.stepMs) / (pk.rows - p1.rows);
  const a = r.alone.perPrompt as { tokens: number; ttftMs: number }[];
  const lo = a[0], hi = a[a.length - 1];
  const perPromptToken = (hi.ttftMs - lo.ttftMs) / (hi.tokens - lo.tokens);
  return `cost model from these probes: a decode step costs ≈ ${p1.stepMs.toFixed(1)} ms with one row, + ${perRow.toFixed(2)} ms per extra row; a prompt token costs ≈ ${perPromptToken.toFixed(2)} ms in prefill (TTFT alone, ${lo.tokens} → ${hi.tokens} tokens). Batching shares the fixed part only`;
}

// ---------------------------------------------------------------- helpers

function sleepUntil(t: number): Promise<void> {
  const ms = t - performance.now();
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** Linear-interpolated percentile. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = ((s.length - 1) * p) / 100, lo = Math.floor(k), hi = Math.ceil(k);
  return s[lo] + (s[hi] - s[lo]) * (k - lo);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function round2(x: number): number {
  return Number(x.toPrecision(2));
}
