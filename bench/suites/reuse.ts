/**
 * Reusing a long prefix from every tier (LMCache's multi-round QA and
 * FastCache's image chat in one):
 *
 *   (a) an image chat: a long system prompt and pictures (~2,000 tokens in
 *       all), then several questions, one per tier, TTFT from before the
 *       prompt is prepared (image decode, vision encoder, restore) to the
 *       first token: cold (nothing cached), GPU hit (the prefix in the pool),
 *       CPU hit (the pool was flooded: the prefix's pages were demoted), and
 *       stored hit — after the browser was closed and started again on the
 *       same profile (the runner's restart), a new engine finds the prefix in
 *       IndexedDB: no vision-encoder run, and an answer equal, token for
 *       token, to an engine with no cache at all. The restore (prepare: read
 *       + verify from IndexedDB into the CPU tier) is timed on its own.
 *   (b) bytes stored for the prefix at ratio 0 / 0.5 / 0.75 (a cache prefix,
 *       Knorm), KV f32 / f16, and the int8 codec.
 *   (c) shapes-VQA accuracy when every answer's image prefix is compressed
 *       (SnapKV 0.5, cache prefix until the image): computed fresh, and
 *       adopted from the store by a new engine — against no compression.
 *
 * options: --model /models/tiny-vlm-idefics3 --prefix 2000 --images 2 --repeats 3 --pages 256
 *          --vqa-model /models/tiny-vlm-shapes --vqa-n 24 --vqa-press snapkv --vqa-ratio 0.5
 */
import { Engine, type EngineOptions } from '../../src/engine/engine.ts';
import type { ChatMessage } from '../../src/engine/types.ts';
import type { PreparedPrompt } from '../../src/engine/input.ts';
import type { CachePrefixOptions } from '../../src/api/chat-types.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchRestart, BenchResult, PlotSpec } from '../types.ts';
import { loadShapesItems, matchesReference } from './shapes-items.ts';
import { p50 } from './strategies-run.ts';

const MiB = 2 ** 20;
let storeNo = 0;
const storeName = () => `fastcache-bench-reuse-${Date.now()}-${++storeNo}`;

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void, carry?: unknown): Promise<BenchResult | BenchRestart> {
  const o = {
    model: opts.model ?? '/models/tiny-vlm-idefics3', prefix: int(opts, 'prefix', 2000), images: int(opts, 'images', 2), imageDir: opts['image-dir'] ?? '/models/tiny-vlm-shapes/testset', repeats: int(opts, 'repeats', 3), pages: int(opts, 'pages', 256),
    vqaModel: opts['vqa-model'] ?? '/models/tiny-vlm-shapes', vqaN: int(opts, 'vqa-n', 24), vqaPress: opts['vqa-press'] ?? 'snapkv', vqaRatio: Number(opts['vqa-ratio'] ?? 0.5),
  };
  const chat = await tierTtfts(gpu, o, log, carry as ReuseCarry | undefined);
  if ('restart' in chat) return chat;
  const bytes = await storedBytes(gpu, o, log);
  const vqa = await storedVqa(gpu, o, log);
  return report(o, chat, bytes, vqa);
}

type Options = { model: string; prefix: number; images: number; imageDir: string; repeats: number; pages: number; vqaModel: string; vqaN: number; vqaPress: string; vqaRatio: number };

function ids(seed: number, n: number, bos: boolean): number[] {
  let s = seed >>> 0;
  const next = () => 3 + ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 509);
  return [...(bos ? [1] : []), ...Array.from({ length: n - (bos ? 1 : 0) }, next)];
}

// ---------------------------------------------------------------- (a) TTFT by tier

interface TierTtft { tier: 'cold' | 'GPU hit' | 'CPU hit' | 'stored hit'; ttftMs: number[]; restoreMs?: number[]; encoderRuns: number[]; reusedTokens: number[] }

/** What (a) carries across a browser restart: the results so far, and the repeat whose stored hit is to be measured now. */
interface ReuseCarry { rep: number; store: string; words: number; ttft: TierTtft[]; prefixTokens: number[]; storedEqualsUncached: number }

/** New tokens per answer (greedy, EOS ignored: every run decodes the same count). */
const NEW_TOKENS = 8;

/** One question per tier about the same prefix (several questions, LMCache's multi-round QA); the stored hit asks the last. */
const QUESTIONS = ['What shape is in the first picture?', 'How many objects are in the second picture?', 'Which colours appear in both pictures?', 'Describe the pictures in one sentence.'];
const WORDS = ('you are a careful assistant who answers questions about pictures of shapes and colours the user uploads each answer is short and names ' +
  'the shape colour count position or relation asked for circle square triangle star red green blue yellow purple orange left right top bottom middle above below').split(' ');

/** The chat of repeat `seed`: a long system prompt (its own words, so each repeat's cold run is cold) and `images` pictures; questions follow. */
interface ChatPrefix { system: string; images: Blob[] }

function systemText(seed: number, words: number): string {
  let s = seed >>> 0;
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[(s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % WORDS.length]);
  return out.join(' ') + '.';
}

/** Repeat `seed`'s system prompt of `words` words and its pictures (the shapes test set's, all 128 px: each takes the same tokens). */
async function chatPrefix(o: Options, seed: number, words: number): Promise<ChatPrefix> {
  const url = (i: number) => `${o.imageDir}/test_${String(i % 300).padStart(4, '0')}.png`;
  const images = await Promise.all(Array.from({ length: o.images }, (_, i) => fetch(url(seed * 7 + i * 13)).then((r) => r.blob())));
  return { system: systemText(seed, words), images };
}

function chat(p: ChatPrefix, question: string): ChatMessage[] {
  return [{ role: 'system', content: p.system }, { role: 'user', content: [...p.images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text: question }] }];
}

/** Where the prefix ends: after the last picture's last token. */
const prefixEnd = (prompt: PreparedPrompt) => Math.max(0, ...prompt.images.flatMap((i) => i.runs.map((r) => r.start + r.count)));

const loadFor = (gpu: Gpu, o: Options, persist: EngineOptions['persist']) => Engine.load(gpu, o.model, { kvPages: o.pages, pageSize: 16, persist });

/** Asks `question` after prefix `p`: TTFT counts from before the prompt is prepared (image decode, vision encoder, restore from the store) to the first token. */
async function ask(engine: Engine, p: ChatPrefix, question: string): Promise<{ ttftMs: number; prepareMs: number; encoderRuns: number; reused: number; tokens: number[]; end: number }> {
  const runs = engine.snapshot().vision.encoderCalls;
  const t = performance.now();
  const prompt = await engine.prepare(chat(p, question));
  const prepareMs = performance.now() - t;
  const r = await engine.generate(prompt, { maxTokens: NEW_TOKENS, ignoreEos: true });
  return { ttftMs: prepareMs + r.timing.ttftMs, prepareMs, encoderRuns: engine.snapshot().vision.encoderCalls - runs, reused: r.timing.prefixHitTokens, tokens: r.tokens, end: prefixEnd(prompt) };
}

/**
 * Sizes the system prompt so that the prefix comes to about `o.prefix`
 * tokens, on a chat of the same shape that shares no page or picture with
 * the measured ones — which also compiles every pipeline and the vision
 * encoder a measured request runs (a fresh browser compiles them again).
 */
async function systemWords(engine: Engine, o: Options): Promise<number> {
  const perWord = engine.encode(systemText(9000, 400)).length / 400;
  const trial = Math.max(1, Math.round((o.prefix * 0.8) / perWord));
  const p = await chatPrefix(o, 9000, trial);
  const r = await ask(engine, p, QUESTIONS[0]);
  return Math.max(1, trial + Math.round((o.prefix - r.end) / perWord));
}

/** Cold, GPU hit and CPU hit of repeat `rep`, its pages written to a new IndexedDB store (returned). */
async function warmTiers(gpu: Gpu, o: Options, rep: number, carry: ReuseCarry): Promise<void> {
  const engine = await loadFor(gpu, o, { store: 'indexeddb', name: carry.store });
  const record = (i: number, a: Awaited<ReturnType<typeof ask>>) => {
    carry.ttft[i].ttftMs.push(a.ttftMs);
    carry.ttft[i].encoderRuns.push(a.encoderRuns);
    carry.ttft[i].reusedTokens.push(a.reused);
  };
  try {
    carry.words = await systemWords(engine, o);
    const p = await chatPrefix(o, 1000 + rep, carry.words);
    const cold = await ask(engine, p, QUESTIONS[0]);
    carry.prefixTokens.push(cold.end);
    record(0, cold);
    record(1, await ask(engine, p, QUESTIONS[1]));
    // flood the pool with other prompts: the prefix's pages are handed out again and demoted to the CPU tier
    for (let f = 0; f * o.prefix < o.pages * 16 * 1.5; f++) await engine.generate(ids(5000 + f, o.prefix, true), { maxTokens: 1 });
    const hitsBefore = engine.snapshot().tiers!.cpu.hits;
    record(2, await ask(engine, p, QUESTIONS[2]));
    if (engine.snapshot().tiers!.cpu.hits === hitsBefore) throw new Error('the CPU-hit question found nothing in the CPU tier: flood more (a larger --pages needs more)');
    await engine.flush();
  } finally {
    await engine.destroy();
  }
}

/**
 * The stored hit of repeat `rep` in a browser started again on the same
 * profile: restore (read + verify) and TTFT, no vision-encoder run; then the
 * same question on an engine with no cache at all, whose answer it must equal.
 */
async function storedHit(gpu: Gpu, o: Options, rep: number, carry: ReuseCarry): Promise<void> {
  const engine = await loadFor(gpu, o, { store: 'indexeddb', name: carry.store });
  const p = await chatPrefix(o, 1000 + rep, carry.words);
  let got: Awaited<ReturnType<typeof ask>>;
  try {
    await systemWords(engine, o); // compiles, as the first session did
    got = await ask(engine, p, QUESTIONS[3]);
    if (got.reused < got.end - 16) throw new Error(`the stored-hit question reused only ${got.reused} of its ${got.end} prefix tokens: the store did not survive the restart`);
    if (got.encoderRuns !== 0) throw new Error(`the stored-hit question ran the vision encoder ${got.encoderRuns} times: its pictures' KV should have come from the store`);
    const t = carry.ttft[3];
    t.restoreMs!.push(got.prepareMs);
    t.ttftMs.push(got.ttftMs);
    t.encoderRuns.push(got.encoderRuns);
    t.reusedTokens.push(got.reused);
    await engine.cache.clear();
  } finally {
    await engine.destroy();
  }
  const plain = await Engine.load(gpu, o.model, { kvPages: o.pages, pageSize: 16, prefixCache: false });
  try {
    const ref = await ask(plain, p, QUESTIONS[3]);
    if (ref.tokens.length === got.tokens.length && ref.tokens.every((x, i) => x === got.tokens[i])) carry.storedEqualsUncached++;
  } finally {
    await plain.destroy();
  }
}

/**
 * (a), one repeat per browser session: repeat k's cold / GPU / CPU hits, then
 * a restart, then its stored hit in the new browser (and repeat k + 1).
 * Returns the restart to ask for, or the finished measurements.
 */
async function tierTtfts(gpu: Gpu, o: Options, log: (s: string) => void, carry: ReuseCarry | undefined): Promise<BenchRestart | ReuseCarry> {
  const tier = (t: TierTtft['tier']): TierTtft => ({ tier: t, ttftMs: [], encoderRuns: [], reusedTokens: [], ...(t === 'stored hit' ? { restoreMs: [] } : {}) });
  const c: ReuseCarry = carry ?? { rep: -1, store: '', words: 0, ttft: [tier('cold'), tier('GPU hit'), tier('CPU hit'), tier('stored hit')], prefixTokens: [], storedEqualsUncached: 0 };
  if (carry) {
    await storedHit(gpu, o, c.rep, c);
    log(`(a) #${c.rep + 1}: prefix ${c.prefixTokens.at(-1)} tokens; ${c.ttft.map((x) => `${x.tier} ${x.ttftMs.at(-1)!.toFixed(0)} ms`).join(', ')}`);
  }
  const rep = c.rep + 1;
  if (rep >= o.repeats) return c;
  const next: ReuseCarry = { ...c, rep, store: storeName() };
  await warmTiers(gpu, o, rep, next);
  return { restart: true, carry: next };
}

// ---------------------------------------------------------------- (b) bytes stored

interface StoredSize { kv: 'f32' | 'f16'; codec: 'pool' | 'int8'; ratio: number; bytes: number; pages: number }

async function storedBytes(gpu: Gpu, o: Options, log: (s: string) => void): Promise<StoredSize[]> {
  const out: StoredSize[] = [];
  const prompt = [...ids(77, o.prefix, true), 7]; // the prefix and one token: only the prefix's pages are full
  for (const kv of ['f32', 'f16'] as const) for (const codec of ['pool', 'int8'] as const) for (const ratio of [0, 0.5, 0.75]) {
    if (kv === 'f16' && codec === 'int8') continue;
    const engine = await Engine.load(gpu, o.model, { kvPages: o.pages, pageSize: 16, kvDtype: kv, persist: { store: 'indexeddb', name: storeName(), codec } });
    try {
      const cachePrefix: CachePrefixOptions | undefined = ratio > 0 ? { until: o.prefix, press: 'knorm', ratio } : undefined;
      await engine.generate(prompt, { maxTokens: 1, ...(cachePrefix ? { cachePrefix } : {}) });
      await engine.flush();
      const s = engine.snapshot().tiers!.stored!;
      out.push({ kv, codec, ratio, bytes: s.bytes, pages: s.entries });
      await engine.cache.clear();
    } finally {
      await engine.destroy();
    }
    log(`(b) KV ${kv}, ${codec}, ratio ${ratio}: ${(out.at(-1)!.bytes / MiB).toFixed(3)} MiB in ${out.at(-1)!.pages} pages`);
  }
  return out;
}

// ---------------------------------------------------------------- (c) VQA with stored compressed image prefixes

interface VqaRow { config: string; accuracy: number; encoderRuns: number; compressions: number; seconds: number }

async function storedVqa(gpu: Gpu, o: Options, log: (s: string) => void): Promise<{ rows: VqaRow[]; storedEqualsFresh: number; int8EqualsFresh: number; n: number }> {
  const { items } = await loadShapesItems(o.vqaModel, o.vqaN);
  const cachePrefix: CachePrefixOptions = { until: 'image', press: o.vqaPress, ratio: o.vqaRatio };
  const persist = { store: 'indexeddb' as const, name: storeName() };
  const rows: VqaRow[] = [];
  const answers = new Map<string, number[][]>();
  const pass = async (config: string, engineOpts: EngineOptions, withPrefix: boolean) => {
    const engine = await Engine.load(gpu, o.vqaModel, { kvPages: 128, pageSize: 16, vision: { backend: 'wasm' }, ...engineOpts });
    try {
      const t = performance.now();
      let correct = 0;
      const got: number[][] = [];
      for (const it of items) {
        const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'image', image: it.image }, { type: 'text', text: it.question }] }];
        const r = await engine.generate(messages, { maxTokens: 32, ...(withPrefix ? { cachePrefix } : {}) });
        if (matchesReference(r, it.expected_ids, engine.tokenizer.eosTokenIds)) correct++;
        got.push(r.tokens);
      }
      await engine.flush();
      const s = engine.snapshot();
      rows.push({ config, accuracy: correct / items.length, encoderRuns: s.vision.encoderCalls, compressions: s.compression.requests, seconds: (performance.now() - t) / 1000 });
      answers.set(config, got);
      log(`(c) ${config}: accuracy ${(correct / items.length).toFixed(3)}, ${s.vision.encoderCalls} encoder runs, ${s.compression.requests} compressions`);
    } finally {
      await engine.destroy();
    }
  };
  await pass('no compression', { prefixCache: false }, false);
  await pass(`${o.vqaPress} ${o.vqaRatio}, computed fresh`, { persist }, true);
  await pass(`${o.vqaPress} ${o.vqaRatio}, from the store (new engine)`, { persist }, true);
  const int8 = { store: 'indexeddb' as const, name: storeName(), codec: 'int8' as const };
  await pass(`${o.vqaPress} ${o.vqaRatio}, fresh, stored int8`, { persist: int8 }, true);
  await pass(`${o.vqaPress} ${o.vqaRatio}, from the int8 store (new engine)`, { persist: int8 }, true);
  const fresh = [...answers.values()][1], stored = [...answers.values()][2];
  const storedEqualsFresh = stored.filter((a, i) => a.length === fresh[i].length && a.every((t, j) => t === fresh[i][j])).length;
  const fromInt8 = [...answers.values()][4];
  const int8EqualsFresh = fromInt8.filter((a, i) => a.length === fresh[i].length && a.every((t, j) => t === fresh[i][j])).length;
  return { rows, storedEqualsFresh, int8EqualsFresh, n: items.length };
}

// ---------------------------------------------------------------- report

function report(o: Options, chat: ReuseCarry, bytes: StoredSize[], vqa: Awaited<ReturnType<typeof storedVqa>>): BenchResult {
  const { ttft, prefixTokens, storedEqualsUncached } = chat;
  const med = (t: TierTtft) => p50(t.ttftMs);
  const cold = med(ttft[0]);
  const base = bytes.find((b) => b.kv === 'f32' && b.codec === 'pool' && b.ratio === 0)!.bytes;
  const label = (b: StoredSize) => `KV ${b.kv}${b.codec === 'int8' ? ' int8' : ''} @${b.ratio}`;
  const rows: (string | number)[][] = [
    ...ttft.map((t) => [`(a) TTFT, ${t.tier}`, `${med(t).toFixed(0)} ms`, `cold ÷ this ${(cold / med(t)).toFixed(1)}×`, `repeats ${t.ttftMs.map((x) => x.toFixed(0)).join(' / ')} ms; reused ${t.reusedTokens.join(' / ')} tokens; ${t.encoderRuns.reduce((a, b) => a + b, 0)} encoder runs${t.restoreMs ? `; restore (read + verify) ${p50(t.restoreMs).toFixed(0)} ms` : ''}`]),
    ...bytes.map((b) => [`(b) stored, ${label(b)}`, `${(b.bytes / MiB).toFixed(3)} MiB`, `${(b.bytes / base).toFixed(3)}× of f32 @0`, `${b.pages} pages`]),
    ...vqa.rows.map((r) => [`(c) VQA, ${r.config}`, r.accuracy.toFixed(3), `${r.encoderRuns} encoder runs, ${r.compressions} compressions`, `${r.seconds.toFixed(1)} s`]),
  ];
  const bar = (title: string, yLabel: string, points: { x: string; y: number }[], logY = false): PlotSpec => ({ title, kind: 'bar', xLabel: '', yLabel, logY, series: [{ name: 'measured', points }] });
  return {
    name: 'reuse',
    data: { options: o, ttft, prefixTokens, storedEqualsUncached, bytes, vqa },
    table: { headers: ['measure', 'value', 'ratio', 'detail'], rows },
    plots: [
      bar(`(a) TTFT after a ~${o.prefix}-token image-chat prefix, by tier (p50 of ${o.repeats})`, 'ms', ttft.map((t) => ({ x: t.tier, y: med(t) })), true),
      bar(`(b) Bytes stored for the ${o.prefix}-token prefix (KV dtype or int8 @ ratio)`, 'MiB', bytes.map((b) => ({ x: `${b.codec === 'int8' ? 'int8' : b.kv} @${b.ratio}`, y: b.bytes / MiB }))),
      bar(`(c) Shapes VQA, ${vqa.n} items (${o.vqaPress} ${o.vqaRatio} image prefix)`, 'accuracy', vqaBars(vqa.rows)),
    ],
    notes: [
      `(a) ${o.model}, an image chat: a system prompt and ${o.images} pictures (${o.imageDir}), prefix ${prefixTokens.join(' / ')} tokens by repeat, then one question per tier (${QUESTIONS.length} in all), ${NEW_TOKENS} new tokens, pool ${o.pages} pages × 16; TTFT from before engine.prepare (image decode, vision encoder, restore) to the first token. Cold ÷ stored hit = ${(cold / med(ttft[3])).toFixed(1)}×`,
      `(a) stored hit: after a browser restart on the same profile (a new Chromium, its IndexedDB kept), a new engine restoring the prefix from IndexedDB, no vision-encoder run; one restart per repeat. Its answer equals an engine with no cache at all (prefix cache off), token for token, in ${storedEqualsUncached} of ${o.repeats} repeats`,
      `(b) bytes in the store after one request of the prefix + 1 token: ratio 0 = the plain prefix pages; 0.5 / 0.75 = a cache prefix (Knorm) keeping whole pages; int8 = 8 bits per value + one f32 scale per (layer, K/V, KV head, page). Ratio 0.5 ÷ 0 = ${(bytes.find((b) => b.kv === 'f32' && b.codec === 'pool' && b.ratio === 0.5)!.bytes / base).toFixed(3)}×; 0.5 with int8 ÷ 0 in f32 = ${(bytes.find((b) => b.codec === 'int8' && b.ratio === 0.5)!.bytes / base).toFixed(3)}×`,
      `(c) ${o.vqaModel}, the first ${vqa.n} test items, greedy, exact match of ids; the cache prefix runs until the image's last token (${o.vqaPress} at ${o.vqaRatio}); answers from the store equal the fresh compression's on ${vqa.storedEqualsFresh} of ${vqa.n}; from the int8 store (lossy) on ${vqa.int8EqualsFresh} of ${vqa.n}`,
    ],
  };
}

/** The VQA rows as short bar labels (the fresh int8 pass only writes the int8 store: its answers are the fresh ones). */
function vqaBars(rows: VqaRow[]): { x: string; y: number }[] {
  const short = ['none', 'fresh', 'from store', null, 'from int8 store'];
  return rows.flatMap((r, i) => (short[i] ? [{ x: short[i]!, y: r.accuracy }] : []));
}

function int(opts: Record<string, string>, k: string, d: number): number {
  const v = Number(opts[k] ?? d);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${opts[k]}`);
  return v;
}
