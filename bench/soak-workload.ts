/**
 * The soak's workload, as data: the distinct prompts ("specs") and a seeded
 * plan of requests over them — which spec, which API, arriving in which
 * burst, which ones are aborted (where and how), which ones take the id of
 * an aborted one. Pure: no engine, no GPU. bench/soak-driver.ts runs it.
 */
import type { CachePrefixOptions, CompressionOptions } from '../src/api/chat-types.ts';
import type { EngineLoadOptions } from '../src/engine/options.ts';
import { mulberry32 } from './rng.ts';

/** The two engines of the soak: a text model (raw prompts) and the shapes VLM (chat, with or without an image). */
export type EngineName = 'text' | 'vlm';

export type SpecInput =
  | { kind: 'text'; text: string }
  | { kind: 'chat'; system: string | null; question: string }
  | { kind: 'image'; image: number; question: string };

/** One distinct prompt with its options: run alone first (its solo output), then many times in the soak. */
export interface SoakSpec {
  key: number;
  engine: EngineName;
  input: SpecInput;
  compression: CompressionOptions | null;
  /** A prefix kept as a (compressed) cache entry: computed by the first request, adopted by the later ones, persisted. */
  cachePrefix: CachePrefixOptions | null;
  maxTokens: number;
  ignoreEos: boolean;
}

/** engine.stream / engine.generate / chat.completions.create streaming / not. */
export type Api = 'stream' | 'generate' | 'chat-stream' | 'chat';
/** Before the first token, after some tokens, or right at the end (the last token seen, or the request just finished). */
export type AbortPoint = 'start' | 'mid' | 'end';
/** An AbortSignal, engine.abort(id) (from an engine event, at a token count), or leaving the stream's loop. */
export type AbortHow = 'signal' | 'engine.abort' | 'break';

export interface AbortPlan {
  point: AbortPoint;
  how: AbortHow;
  /** 'mid': where in the solo output, as a fraction in (0, 1); the token count is resolved against the solo length. */
  frac: number;
}

export interface PlannedRequest {
  n: number;
  spec: number;
  api: Api;
  /** The caller-chosen request id; a reused one equals the id of request `reuseOf`. */
  id: string;
  /** This request takes the id of request `reuseOf` (aborted), once that one has settled. */
  reuseOf: number | null;
  abort: AbortPlan | null;
  /** Offset from its burst's start (ms). */
  delayMs: number;
}

export interface Burst {
  requests: PlannedRequest[];
  /** After sending: wait until every request has settled (then check the engines are idle), or sleep `gapMs` and send the next burst into the running ones. */
  drain: boolean;
  gapMs: number;
}

export interface PlanOptions {
  requests: number;
  seed: number;
  /** Fraction of requests aborted (exactly round(rate × requests)). */
  abortRate: number;
  /** Fraction of aborted requests whose id a later request reuses. */
  reuseRate: number;
  maxBurst: number;
  maxGapMs: number;
  /** Probability that a burst is drained before the next one. */
  drainRate: number;
}

/**
 * The engines' load options: pools small enough that bursts fill them (preemption, the prefix
 * cache evicting into the CPU tier and back), a CPU tier, and stored prefix caches — in memory
 * here; the benchmark in Chromium stores them in IndexedDB.
 */
export const SOAK_TEXT_LOAD: EngineLoadOptions = { kvPages: 40, pageSize: 16, cpuCacheBytes: 2 << 20, persist: { store: 'memory' } };
export const SOAK_VLM_LOAD: EngineLoadOptions = { kvPages: 48, pageSize: 16, cpuCacheBytes: 2 << 20, persist: { store: 'memory' } };

export const DEFAULT_PLAN: Omit<PlanOptions, 'requests'> = { seed: 1, abortRate: 0.1, reuseRate: 0.3, maxBurst: 24, maxGapMs: 300, drainRate: 0.35 };

const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. One day, she saw a big dog under a tree. ' +
  'The dog was sad because he was lost. Lily wanted to help him find his home. She walked with the dog down the street and asked everyone she met if they knew him. ' +
  'An old man said, "I know that dog! He lives by the blue house near the pond." Lily was very happy. She took the dog to the blue house and knocked on the door. ' +
  'A boy opened the door and smiled. "Max! You came back!" he said. The boy hugged his dog and thanked Lily.';
/** Shared openings of different lengths: the text prompts repeat them, so later ones start on cached pages. */
const STEMS = [STORY.slice(0, 60), STORY.slice(0, 240), STORY.slice(0, 520)];
const ENDINGS = [' Then', ' The next day, Tom', ' "Look!" said the bird, and', ' At night, the'];
const SYSTEM = 'You are a helpful assistant who looks at pictures of coloured shapes on a plain background and answers questions about them in a few words.';
const CHAT_QUESTIONS = ['What shape is the red object?', 'How many shapes are there?', 'Describe the image briefly.', 'Is there a blue star?'];
/** Shapes test items (index, question) used with their image: two questions per image, so the second starts on the first one's image pages. */
export const IMAGE_ITEMS: { image: number; questions: string[] }[] = [
  { image: 0, questions: ['What shape is the red object?', 'Describe the image briefly.'] },
  { image: 1, questions: ['What colour is the circle?', 'How many shapes are there?'] },
  { image: 2, questions: ['How many circles are there?', 'Where is the square?'] },
  { image: 3, questions: ['Where is the square?', 'What colour is the shape?'] },
  { image: 4, questions: ['Is the star to the left or to the right of the square?', 'Is there a blue star?'] },
  { image: 5, questions: ['Is there a blue star?', 'Describe the image briefly.'] },
];

const SNAPKV: CompressionOptions = { press: 'snapkv', ratio: 0.5 };
const KNORM: CompressionOptions = { press: 'knorm', ratio: 0.5 };
const IMAGE_PREFIX: CachePrefixOptions = { until: 'image', press: 'snapkv', ratio: 0.5 };
const SYSTEM_PREFIX: CachePrefixOptions = { until: 'system', press: 'knorm', ratio: 0 };

/** The distinct prompts: text of 3 lengths × 4 endings (+ compressed ones), chat questions with and without a shared system message, and image questions (+ compressed). */
export function buildSpecs(): SoakSpec[] {
  const specs: (Omit<SoakSpec, 'key' | 'compression' | 'cachePrefix'> & Partial<Pick<SoakSpec, 'compression' | 'cachePrefix'>>)[] = [];
  STEMS.forEach((stem, s) =>
    ENDINGS.forEach((end, e) => specs.push({ engine: 'text', input: { kind: 'text', text: stem + end }, compression: null, maxTokens: 4 + ((s * 4 + e) * 7) % 21, ignoreEos: e !== 3 })),
  );
  for (const [s, c] of [[1, SNAPKV], [2, SNAPKV], [1, KNORM], [2, KNORM]] as const) specs.push({ engine: 'text', input: { kind: 'text', text: STEMS[s] + ENDINGS[0] }, compression: c, maxTokens: 16, ignoreEos: true });
  CHAT_QUESTIONS.forEach((q, k) => {
    specs.push({ engine: 'vlm', input: { kind: 'chat', system: null, question: q }, compression: null, maxTokens: 12, ignoreEos: true });
    specs.push({ engine: 'vlm', input: { kind: 'chat', system: SYSTEM, question: q }, compression: k % 2 ? SNAPKV : null, maxTokens: 10, ignoreEos: k < 2 });
  });
  IMAGE_ITEMS.forEach(({ image, questions }) =>
    questions.forEach((q, k) => specs.push({ engine: 'vlm', input: { kind: 'image', image, question: q }, compression: null, maxTokens: 8, ignoreEos: k === 0 })),
  );
  for (const [image, c] of [[0, SNAPKV], [2, KNORM], [4, SNAPKV], [5, KNORM]] as const) specs.push({ engine: 'vlm', input: { kind: 'image', image, question: IMAGE_ITEMS[image].questions[0] }, compression: c, maxTokens: 8, ignoreEos: true });
  // compressed prefix caches: both questions of an image on its stored, compressed image prefix; a system prompt kept whole
  for (const image of [1, 3]) IMAGE_ITEMS[image].questions.forEach((q) => specs.push({ engine: 'vlm', input: { kind: 'image', image, question: q }, cachePrefix: IMAGE_PREFIX, maxTokens: 8, ignoreEos: true }));
  specs.push({ engine: 'vlm', input: { kind: 'chat', system: SYSTEM, question: CHAT_QUESTIONS[2] }, cachePrefix: SYSTEM_PREFIX, maxTokens: 10, ignoreEos: true });
  return specs.map((s, key) => ({ compression: null, cachePrefix: null, ...s, key }));
}

/**
 * A smaller set for CI: every kind of prompt (three text lengths, chat with
 * and without the shared system message, images and their second question,
 * compressed ones of each), outputs capped at `maxTokens`.
 */
export function shortSpecs(maxTokens = 6): SoakSpec[] {
  const keep = [0, 3, 4, 7, 8, 11, 12, 14, 16, 17, 19, 24, 25, 26, 27, 36, 37, 40, 41, 44];
  const all = buildSpecs();
  return keep.map((k, key) => ({ ...all[k], key, maxTokens: Math.min(all[k].maxTokens, maxTokens) }));
}

/** The APIs a spec can go through: raw text prompts have no chat form. */
export function apisFor(spec: SoakSpec): Api[] {
  return spec.input.kind === 'text' ? ['stream', 'generate'] : ['stream', 'generate', 'chat-stream', 'chat'];
}

/** The ways `api` can abort at `point`. */
export function abortWays(api: Api, point: AbortPoint): AbortHow[] {
  const ways: AbortHow[] = ['engine.abort'];
  if (api === 'stream' || api === 'generate') ways.push('signal');
  if ((api === 'stream' || api === 'chat-stream') && point !== 'start') ways.push('break');
  return ways;
}

/** The seeded plan: `requests` requests in bursts of random sizes and gaps. */
export function planSoak(specs: SoakSpec[], o: PlanOptions): Burst[] {
  const r = mulberry32(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const reqs: PlannedRequest[] = Array.from({ length: o.requests }, (_, n) => {
    const spec = Math.floor(r() * specs.length);
    return { n, spec, api: pick(apisFor(specs[spec])), id: `soak-${o.seed}-${n}`, reuseOf: null, abort: null, delayMs: 0 };
  });
  // exactly round(rate × n) aborted, at points spread over start / mid / end
  const order = shuffle(reqs.map((q) => q.n), r);
  const aborted = order.slice(0, Math.round(o.abortRate * o.requests)).sort((a, b) => a - b);
  aborted.forEach((n, k) => {
    const point = (['start', 'mid', 'end'] as const)[k % 3];
    reqs[n].abort = { point, how: pick(abortWays(reqs[n].api, point)), frac: 0.1 + 0.8 * r() };
  });
  // some aborted ids are taken by a later request that is not aborted, 1–20 places on (often in the same burst)
  const latest = new Map<string, number>();
  for (const n of aborted) {
    if (r() >= o.reuseRate) continue;
    for (let tries = 0; tries < 8; tries++) {
      const j = n + 1 + Math.floor(r() * 20);
      if (j >= o.requests || reqs[j].abort || reqs[j].reuseOf !== null) continue;
      const holder = latest.get(reqs[n].id) ?? n;
      if (holder > j) continue;
      reqs[j].reuseOf = holder;
      reqs[j].id = reqs[n].id;
      latest.set(reqs[n].id, j);
      break;
    }
  }
  const bursts: Burst[] = [];
  for (let i = 0; i < reqs.length; ) {
    const size = Math.min(reqs.length - i, 1 + Math.floor(r() * r() * o.maxBurst));
    const requests = reqs.slice(i, i + size);
    requests.forEach((q) => (q.delayMs = Math.floor(r() * 30)));
    bursts.push({ requests, drain: r() < o.drainRate, gapMs: Math.floor(r() * o.maxGapMs) });
    i += size;
  }
  return bursts;
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}
