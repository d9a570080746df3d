/**
 * KV strategies side by side (the InferKVCache comparison), in one browser
 * session on the same requests:
 *
 *   naive          each request reserves its maximum context (prompt +
 *                  max_tokens) at admission, as a per-request contiguous cache
 *                  does; no sharing. Emulated on the paged engine: at most
 *                  ⌊pool ÷ reservation⌋ requests run at once, prefix cache and
 *                  CPU tier off; its GPU bytes are the reservations held.
 *   paged          pages allocated as tokens arrive; prefix cache off
 *   + prefix       equal prompt prefixes share pages
 *   + CPU tier     cached pages the pool hands out again go to the CPU tier
 *   rolling window sinks + recent tokens only (lossy: greedy agreement)
 *
 * The workload: D documents × Q questions, prompt = document + question, all
 * submitted at once in question-major order (d0q0 d1q0 … d0q1 …), so a
 * document comes back after the others went through a small pool. Each row
 * also tries a > 4k-token prompt on a generated tiny Llama with 16k
 * positions, on a pool smaller than that prompt. Then the multi-round chat
 * (multi-round-chat.ts): TTFT per round with the prefix cache alone vs with
 * the CPU tier.
 *
 * options: --model /models/stories260K --docs 8 --questions 3 --doc 192 --question 24
 *          --max-tokens 96 --stop "." (empty: none) --ignore-eos false --repeats 3 --pages 72 --page-size 16 --window 4,128 --cpu-mib 64
 *          --long-model /models/tiny-llama-16k --long-prompt 4608 --long-tokens 16 --long-pages 128 --long-window 4,512 --long-chunks 64,16
 *          --users 6 --rounds 5 --system 64 --turn 24 --answer 32 --chat-pages 40
 */
import { Engine } from '../../src/engine/engine.ts';
import type { EngineLoadOptions } from '../../src/engine/options.ts';
import type { KvWindow } from '../../src/api/chat-types.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import { STORIES } from './stories.ts';
import { agreement, measure, p50, type Job, type Measured } from './strategies-run.ts';
import { multiRoundChat, type ChatRound } from './multi-round-chat.ts';

interface Strategy {
  name: string;
  load: EngineLoadOptions;
  window?: KvWindow;
  /** Pages the naive strategy reserves per request (null: a paged strategy). */
  reserve: number | null;
}

interface LongRun {
  ran: boolean;
  detail: string;
  peaks: { chunk: number; pages: number }[];
  bound: number | null;
}

interface Row {
  strategy: string;
  peakGpuKvBytes: number;
  peakCpuBytes: number;
  peakRunning: number;
  /** Median over repeats (tokPerSRepeats: each). */
  tokPerS: number;
  tokPerSRepeats: number[];
  ttftP50Ms: number;
  differ: number;
  tokenAgreement: number;
  m: Omit<Measured, 'outputs' | 'ttftMs'>;
  long: LongRun;
}

const MiB = 2 ** 20;

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const o = parseOptions(opts);
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
  const requestTokens = o.doc + o.question + o.maxTokens;
  const reserve = Math.ceil(requestTokens / o.pageSize);
  const cap = Math.floor(o.pages / reserve);
  if (cap < 1) throw new Error(`--pages ${o.pages} cannot hold one naive reservation of ${reserve} pages (${requestTokens} tokens): give more pages`);
  const plain = { prefixCache: false, cpuCacheBytes: 0 };
  const strategies: Strategy[] = [
    { name: 'naive (reserve max context)', load: { ...plain, scheduler: { maxRunning: cap } }, reserve },
    { name: 'paged', load: plain, reserve: null },
    { name: 'paged + prefix cache', load: { prefixCache: true, cpuCacheBytes: 0 }, reserve: null },
    { name: 'paged + prefix + CPU tier', load: { prefixCache: true, cpuCacheBytes: o.cpuBytes }, reserve: null },
    { name: `rolling window ${o.window.sinks}+${o.window.recent}`, load: plain, window: o.window, reserve: null },
  ];

  // repeats run the strategies in turn, each on a fresh engine, so machine noise shows as the spread between repeats
  const runs = new Map<Strategy, Measured[]>(strategies.map((s) => [s, []]));
  let pageBytes = 0;
  for (let rep = 0; rep < o.repeats; rep++) for (const s of strategies) {
    const engine = await Engine.load(gpu, o.model, { ...s.load, kvPages: o.pages, pageSize: o.pageSize });
    try {
      pageBytes = (await engine.info()).kvPageBytes;
      await warmUp(engine);
      runs.get(s)!.push(await measure(engine, workload(engine, o), { maxTokens: o.maxTokens, ignoreEos: o.ignoreEos, ...(o.stop ? { stop: [o.stop] } : {}), ...(s.window ? { window: s.window } : {}) }));
    } finally {
      await engine.destroy();
    }
    const m = runs.get(s)!.at(-1)!;
    log(`#${rep + 1} ${s.name}: ${((m.outputTokens * 1000) / m.wallMs).toFixed(1)} tok/s, TTFT p50 ${p50([...m.ttftMs.values()]).toFixed(0)} ms, peak ${m.peakPages} pages (${elapsed()})`);
  }
  const baseline = runs.get(strategies[0])![0].outputs;
  const rows: Row[] = [];
  for (const s of strategies) {
    const ms = runs.get(s)!;
    const long = await longContext(gpu, s, o);
    const agree = ms.map((m) => agreement(baseline, m.outputs));
    const { outputs: _o, ttftMs: _t, ...first } = ms[0];
    rows.push({
      strategy: s.name,
      peakGpuKvBytes: Math.max(...ms.map((m) => (s.reserve !== null ? m.peakRunning * s.reserve : m.peakPages))) * pageBytes,
      peakCpuBytes: Math.max(...ms.map((m) => m.peakCpuBytes)),
      peakRunning: Math.max(...ms.map((m) => m.peakRunning)),
      tokPerS: p50(ms.map((m) => (m.outputTokens * 1000) / m.wallMs)),
      tokPerSRepeats: ms.map((m) => (m.outputTokens * 1000) / m.wallMs),
      ttftP50Ms: p50(ms.map((m) => p50([...m.ttftMs.values()]))),
      differ: Math.max(...agree.map((a) => a.differ)), tokenAgreement: Math.min(...agree.map((a) => a.tokenAgreement)),
      m: first, long,
    });
    log(`${s.name}: > 4k prompt ${long.ran ? 'ran' : 'refused'}: ${long.detail} (${elapsed()})`);
  }

  const chat: Record<string, ChatRound[]> = {};
  const chatOutputs: Map<string, number[]>[] = [];
  for (const [name, cpuCacheBytes] of [['prefix cache only', 0], ['prefix cache + CPU tier', o.cpuBytes]] as const) {
    const engine = await Engine.load(gpu, o.model, { prefixCache: true, cpuCacheBytes, kvPages: o.chatPages, pageSize: o.pageSize });
    try {
      await warmUp(engine);
      const res = await multiRoundChat(engine, { users: o.users, rounds: o.rounds, system: tokens(engine, STORIES[0], o.system, true), question: (u, r) => tokens(engine, question(u * o.rounds + r), o.turn, false), maxTokens: o.answer });
      chat[name] = res.rounds;
      chatOutputs.push(res.outputs);
    } finally {
      await engine.destroy();
    }
    log(`chat, ${name}: TTFT p50 per round ${chat[name].map((r) => r.ttftP50Ms.toFixed(0)).join(' / ')} ms (${elapsed()})`);
  }
  const chatDiffer = agreement(chatOutputs[0], chatOutputs[1]).differ;
  return report(rows, chat, chatDiffer, o);
}

type Options = ReturnType<typeof parseOptions>;

function parseOptions(opts: Record<string, string>) {
  const int = (k: string, d: number) => {
    const v = Number(opts[k] ?? d);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${opts[k]}`);
    return v;
  };
  const win = (k: string, d: string): KvWindow => {
    const [sinks, recent] = (opts[k] ?? d).split(',').map(Number);
    if (!Number.isInteger(sinks) || !Number.isInteger(recent)) throw new Error(`--${k} must be sinks,recent (two integers), got ${opts[k]}`);
    return { sinks, recent };
  };
  return {
    model: opts.model ?? '/models/stories260K',
    docs: int('docs', 8), questions: int('questions', 3), doc: int('doc', 192), question: int('question', 24),
    maxTokens: int('max-tokens', 96), ignoreEos: opts['ignore-eos'] === 'true', stop: opts.stop ?? '.', repeats: int('repeats', 3),
    pages: int('pages', 72), pageSize: int('page-size', 16),
    window: win('window', '4,128'), cpuBytes: int('cpu-mib', 64) * MiB,
    longModel: opts['long-model'] ?? '/models/tiny-llama-16k', longPrompt: int('long-prompt', 4608), longPages: int('long-pages', 128),
    longWindow: win('long-window', '4,512'), longTokens: int('long-tokens', 16),
    longChunks: (opts['long-chunks'] ?? '64,16').split(',').map((c) => {
      const v = Number(c);
      if (!Number.isInteger(v) || v < 1) throw new Error(`--long-chunks must be positive integers, got ${opts['long-chunks']}`);
      return v;
    }),
    users: int('users', 6), rounds: int('rounds', 5), system: int('system', 64), turn: int('turn', 24), answer: int('answer', 32),
    chatPages: int('chat-pages', 40),
  };
}

/** Compiles the pipelines on a prompt no workload shares. */
async function warmUp(engine: Engine): Promise<void> {
  await engine.generate([1, ...Array.from({ length: 40 }, (_, i) => 500 - i)], { maxTokens: 4, ignoreEos: true });
}

/** `n` token ids of `text` (repeated as needed); with `bos`, BOS first. */
function tokens(engine: Engine, text: string, n: number, bos: boolean): number[] {
  const first = engine.encode(text); // BOS first
  let ids = first.slice(1);
  while (ids.length < n) ids = ids.concat(engine.encode(' ' + text).slice(1));
  return bos ? [first[0], ...ids.slice(0, n - 1)] : ids.slice(0, n);
}

const SENTENCES = STORIES.flatMap((s) => s.split(/(?<=[.!?]"?)\s+/));

/** The k-th question: numbered, so no two are the same. */
function question(k: number): string {
  return `\nQuestion ${k + 1}: ${SENTENCES[(7 * k + 3) % SENTENCES.length]}`;
}

/** D documents (story k opens document k, later sentences follow) × Q questions, question-major. */
function workload(engine: Engine, o: Options): Job[] {
  const docs = Array.from({ length: o.docs }, (_, d) => tokens(engine, SENTENCES.slice((d * 5) % SENTENCES.length).join(' '), o.doc, true));
  const jobs: Job[] = [];
  for (let q = 0; q < o.questions; q++) for (let d = 0; d < o.docs; d++) jobs.push({ id: `doc${d}-q${q}`, ids: [...docs[d], ...tokens(engine, question(d * o.questions + q), o.question, false)] });
  return jobs;
}

/**
 * The strategy's engine on a pool smaller than a > 4k-token prompt: does the
 * prompt run, and in how many pages? A windowed request holds its sinks, its
 * recent tokens and the prefill chunk in flight: the window row runs at each
 * of --long-chunks, and its bound is (sinks + recent) / pageSize + 2 pages.
 */
async function longContext(gpu: Gpu, s: Strategy, o: Options): Promise<LongRun> {
  const total = o.longPrompt + o.longTokens;
  if (s.reserve !== null) {
    const need = Math.ceil(total / o.pageSize);
    if (need > o.longPages) return { ran: false, detail: `a ${total}-token reservation needs ${need} pages; the pool has ${o.longPages}`, peaks: [], bound: null };
  }
  const window = s.window ? o.longWindow : undefined;
  let seed = 12345;
  const ids = [1, ...Array.from({ length: o.longPrompt - 1 }, () => 3 + ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % 509))];
  const peaks: LongRun['peaks'] = [];
  try {
    for (const chunk of window ? o.longChunks : [o.longChunks[0]]) {
      const engine = await Engine.load(gpu, o.longModel, { ...s.load, kvPages: o.longPages, pageSize: o.pageSize, prefillChunk: chunk });
      try {
        const m = await measure(engine, [{ id: 'long', ids }], { maxTokens: o.longTokens, ignoreEos: true, ...(window ? { window } : {}) });
        peaks.push({ chunk, pages: m.peakPages });
      } finally {
        await engine.destroy();
      }
    }
  } catch (e) {
    return { ran: false, detail: (e as Error).message, peaks, bound: null };
  }
  const bound = window ? Math.floor((window.sinks + window.recent) / o.pageSize) + 2 : null;
  const at = peaks.map((p) => `${p.pages} at chunk ${p.chunk}${bound !== null ? (p.pages <= bound ? ' (within)' : ' (over)') : ''}`).join(', ');
  return { ran: true, detail: `${total} tokens; peak pages ${at}`, peaks, bound };
}

function report(rows: Row[], chat: Record<string, ChatRound[]>, chatDiffer: number, o: Options): BenchResult {
  const mb = (b: number) => (b / MiB).toFixed(3);
  const sharing = (r: Row) => (r.m.prefixHitTokens > 0 ? `yes: ${r.m.prefixHitTokens} prompt tokens reused${r.m.cpuHits > 0 ? ` (${r.m.promotedPages} pages from the CPU tier)` : ''}` : 'no');
  const outputs = (r: Row, i: number) => (i === 0 ? 'baseline' : r.strategy.startsWith('rolling') ? `${r.differ} differ; greedy agreement ${(100 * r.tokenAgreement).toFixed(1)} %` : `${r.differ} differ`);
  const long = (l: LongRun) => (l.ran ? `yes: ${l.detail}${l.bound !== null ? `; bound ${l.bound}` : ''}` : `no: ${l.detail}`);
  const names = Object.keys(chat);
  const [without, withTier] = names.map((n) => chat[n]);
  const later = (rs: ChatRound[]) => p50(rs.slice(1).flatMap((r) => r.ttftsMs));
  const ratio = later(withTier) / later(without);
  const bar = (title: string, yLabel: string, f: (r: Row) => number): PlotSpec => ({ title, kind: 'bar', xLabel: 'strategy', yLabel, series: [{ name: 'measured', points: rows.map((r) => ({ x: shortName(r.strategy), y: f(r) })) }] });
  return {
    name: 'strategies',
    data: { options: o, rows, chat, chatOutputsDiffer: chatDiffer, chatTtftRatio: ratio },
    table: {
      headers: ['strategy', 'peak running', 'peak GPU KV (MiB)', 'peak CPU (MiB)', 'tok/s', 'TTFT p50 (ms)', 'outputs vs baseline', `> 4k prompt (${o.longPrompt} tokens)`, 'cross-request sharing', 'prompt tokens computed', 'output tokens', 'preemptions', 'wall (s)'],
      rows: rows.map((r, i) => [r.strategy, String(r.peakRunning), mb(r.peakGpuKvBytes), mb(r.peakCpuBytes), r.tokPerS.toFixed(1), r.ttftP50Ms.toFixed(0), outputs(r, i), long(r.long), sharing(r), String(r.m.promptTokensComputed), String(r.m.outputTokens), String(r.m.preemptions), (r.m.wallMs / 1000).toFixed(1)]),
    },
    plots: [
      bar('Peak GPU KV bytes, same requests', 'MiB', (r) => r.peakGpuKvBytes / MiB),
      bar('Throughput, same requests', 'output tok/s', (r) => r.tokPerS),
      bar('TTFT p50, same requests', 'ms', (r) => r.ttftP50Ms),
      { title: `Multi-round chat: ${o.users} users × ${o.rounds} rounds, ${o.chatPages}-page pool`, kind: 'line', xLabel: 'round', yLabel: 'TTFT p50 (ms)', series: names.map((n) => ({ name: n, points: chat[n].map((r) => ({ x: r.round, y: r.ttftP50Ms })) })) },
    ],
    notes: [
      `workload: ${o.model}, ${o.docs} documents × ${o.questions} questions = ${o.docs * o.questions} requests, each ${o.doc} document + ${o.question} question tokens + at most ${o.maxTokens} new (greedy, ${o.ignoreEos ? 'ignore_eos' : 'ending at EOS'}${o.stop ? ` or at the stop string ${JSON.stringify(o.stop)}` : ''}), all submitted at once in question-major order; pool of ${o.pages} pages × ${o.pageSize} tokens for every row; in-process Engine on the page thread`,
      `${o.repeats} repeats, the strategies in turn, each on a fresh engine: tok/s and TTFT p50 are medians over repeats (tok/s per repeat: ${rows.map((r) => `${shortName(r.strategy)} ${r.tokPerSRepeats.map((x) => x.toFixed(0)).join('/')}`).join('; ')}); peaks are the largest; outputs vs baseline: the worst repeat`,
      `naive is emulated on the paged engine: each request holds a reservation of ${Math.ceil((o.doc + o.question + o.maxTokens) / o.pageSize)} pages (its prompt + max_tokens, whether or not it stops earlier), so at most ${Math.floor(o.pages / Math.ceil((o.doc + o.question + o.maxTokens) / o.pageSize))} run at once; its peak GPU KV = peak running × reservation; paged rows: stats().pool.peakPagesInUse × kvPageBytes`,
      'outputs vs baseline: requests whose greedy tokens differ from the naive row (the lossless rows must show 0); greedy agreement: share of positions with the same token as the baseline',
      `> 4k prompt: ${o.longModel} (max_position_embeddings 16384), a ${o.longPrompt}-token prompt + ${o.longTokens} new tokens on a pool of ${o.longPages} pages (${o.longPages * o.pageSize} tokens); the rolling window row uses sinks ${o.longWindow.sinks} + recent ${o.longWindow.recent} at prefill chunks ${o.longChunks.join(' and ')}, bound = (sinks + recent) / pageSize + 2 pages (a chunk in flight needs recent + chunk − 1 slots, so the bound holds for chunks ≤ pageSize)`,
      `multi-round chat: ${o.users} users × ${o.rounds} rounds, shared ${o.system}-token system prompt, ${o.turn}-token questions, ${o.answer}-token answers (the model's own, appended to the history), all users at once per round, pool of ${o.chatPages} pages, CPU tier ${o.cpuBytes / MiB} MiB; outputs differing between the two runs: ${chatDiffer}`,
      ...names.map((n) => `chat, ${n}: TTFT p50 per round ${chat[n].map((r) => r.ttftP50Ms.toFixed(0)).join(' / ')} ms; prompt tokens computed per round ${chat[n].map((r) => r.promptTokensComputed).join(' / ')}; CPU-tier hits per round ${chat[n].map((r) => r.cpuHits).join(' / ')}`),
      `chat TTFT p50 over rounds 2–${o.rounds}: ${later(withTier).toFixed(0)} ms with the CPU tier vs ${later(without).toFixed(0)} ms with the prefix cache alone = ${ratio.toFixed(2)} ×`,
    ],
  };
}

function shortName(s: string): string {
  return s.replace('paged + prefix + CPU tier', '+CPU tier').replace('paged + prefix cache', '+prefix').replace(' (reserve max context)', '').replace('rolling window', 'window');
}
