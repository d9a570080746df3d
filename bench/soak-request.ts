/**
 * One soak request through one API (engine.stream, engine.generate,
 * chat.completions.create streaming or not), aborted where its plan says —
 * by an AbortSignal, by engine.abort(id) (from the caller's loop or from an
 * engine event: request-queued, step-start, request-finished), or by leaving
 * the stream's loop — and checked against its solo output: a request that
 * ran to the end must equal it (token ids on the engine APIs; text and token
 * count on the OpenAI ones), an aborted one must be a prefix of it.
 */
import type { Engine } from '../src/engine/engine.ts';
import type { ChatMessage, EngineEvent, GenerateOptions, GenerationResult } from '../src/engine/types.ts';
import type { ChatCompletionRequest } from '../src/api/openai-types.ts';
import type { AbortPlan, Api, PlannedRequest, SoakSpec } from './soak-workload.ts';

/** A spec's greedy output when it ran alone. */
export interface SoloOutput {
  tokens: number[];
  text: string;
  finishReason: GenerationResult['finishReason'];
}

export interface RequestRecord {
  n: number;
  spec: number;
  api: Api;
  id: string;
  reused: boolean;
  abort: AbortPlan | null;
  /** 'completed': ran to its end (a planned abort that came too late included); 'aborted': ended early by its abort. */
  outcome: 'completed' | 'aborted' | 'error';
  /** Tokens it produced (the OpenAI stream: content chunks seen when left early). */
  tokens: number;
  /** completed: equal to the solo output; aborted: a prefix of it. */
  equal: boolean;
  error?: string;
  startMs: number;
  endMs: number;
}

interface Hooks {
  queued?: () => void;
  /** The request is in a step's decode rows for the `count`-th time (count tokens before this step, when nothing was preempted). */
  decoding?: (count: number) => void;
  finished?: () => void;
  decodes: number;
}

/** Engine events routed to the request that is waiting for them, by id. */
export class EngineWatch {
  private readonly hooks = new Map<string, Hooks>();

  constructor(engine: Engine) {
    engine.on((e) => this.dispatch(e));
  }

  watch(id: string, h: Omit<Hooks, 'decodes'>): () => void {
    if (this.hooks.has(id)) throw new Error(`soak: two requests in flight with id ${id}`);
    this.hooks.set(id, { ...h, decodes: 0 });
    return () => this.hooks.delete(id);
  }

  private dispatch(e: EngineEvent): void {
    if (e.kind === 'request-queued') this.hooks.get(e.id)?.queued?.();
    else if (e.kind === 'request-finished') this.hooks.get(e.id)?.finished?.();
    else if (e.kind === 'step-start') {
      for (const id of e.decode) {
        const h = this.hooks.get(id);
        if (h) h.decoding?.(++h.decodes);
      }
    }
  }
}

export interface RequestContext {
  engine: Engine;
  watch: EngineWatch;
  input: string | ChatMessage[];
  solo: SoloOutput;
  /** Page-clock origin of the run. */
  t0: number;
}

/** Greedy engine options of a spec. */
export function engineOptions(spec: SoakSpec): GenerateOptions {
  return { maxTokens: spec.maxTokens, ignoreEos: spec.ignoreEos, sampling: { temperature: 0 }, ...(spec.compression ? { compression: spec.compression } : {}), ...(spec.cachePrefix ? { cachePrefix: spec.cachePrefix } : {}) };
}

/** Where a planned abort fires, in tokens seen: 0 before the first, the solo length at the end. */
function abortAt(plan: AbortPlan, soloLength: number): number {
  if (plan.point === 'start') return 0;
  if (plan.point === 'end') return soloLength;
  return Math.max(1, Math.min(soloLength - 1, Math.floor(plan.frac * soloLength)));
}

export async function runRequest(q: PlannedRequest, spec: SoakSpec, ctx: RequestContext): Promise<RequestRecord> {
  const startMs = performance.now() - ctx.t0;
  const base = { n: q.n, spec: q.spec, api: q.api, id: q.id, reused: q.reuseOf !== null, abort: q.abort, startMs };
  try {
    const r = q.api === 'stream' || q.api === 'generate' ? await viaEngine(q, spec, ctx) : await viaOpenAI(q, spec, ctx);
    return { ...base, ...r, endMs: performance.now() - ctx.t0 };
  } catch (e) {
    return { ...base, outcome: 'error', tokens: 0, equal: false, error: e instanceof Error ? e.message : String(e), endMs: performance.now() - ctx.t0 };
  }
}

type Verdict = Pick<RequestRecord, 'outcome' | 'tokens' | 'equal'>;

async function viaEngine(q: PlannedRequest, spec: SoakSpec, ctx: RequestContext): Promise<Verdict> {
  const { engine, solo } = ctx;
  const plan = q.abort;
  const at = plan ? abortAt(plan, solo.tokens.length) : -1;
  const controller = new AbortController();
  const opts: GenerateOptions = { ...engineOptions(spec), requestId: q.id, signal: controller.signal };
  const fire = () => (plan!.how === 'signal' ? controller.abort() : void engine.abort(q.id));
  const unwatch = ctx.watch.watch(q.id, {
    // engine.abort before the first token: as soon as the request is queued
    queued: () => plan?.point === 'start' && plan.how === 'engine.abort' && void engine.abort(q.id),
    // generate's engine.abort mid-stream: from the step that would produce token `at` + 1
    decoding: (count) => q.api === 'generate' && plan?.point === 'mid' && plan.how === 'engine.abort' && count === at && void engine.abort(q.id),
  });
  try {
    const seen: number[] = [];
    let result: GenerationResult | null = null;
    if (q.api === 'generate') {
      const p = engine.generate(ctx.input, {
        ...opts,
        onToken: (c) => {
          if (c.token >= 0) seen.push(c.token);
          if (plan && plan.point !== 'start' && seen.length === at && !(plan.point === 'mid' && plan.how === 'engine.abort')) fire();
        },
      });
      if (plan?.point === 'start' && plan.how === 'signal') controller.abort(); // while the prompt is being prepared
      result = await p;
    } else {
      const it = engine.stream(ctx.input, opts);
      if (plan?.point === 'start' && plan.how === 'signal') controller.abort(); // before the generator runs: aborted at submit
      for (;;) {
        const r = await it.next();
        if (r.done) {
          result = r.value;
          break;
        }
        if (r.value.token >= 0) seen.push(r.value.token);
        if (plan && plan.point !== 'start' && seen.length === at) {
          if (plan.how === 'break') {
            await it.return(undefined as never); // what `break` in a for-await does: the stream's finally aborts the request
            break;
          }
          fire();
        }
      }
    }
    const tokens = result ? result.tokens : seen;
    if (result && result.finishReason === 'error') throw new Error(`finish 'error': ${result.error}`);
    const early = result ? result.finishReason === 'abort' : tokens.length < solo.tokens.length;
    if (early) return { outcome: 'aborted', tokens: tokens.length, equal: isPrefix(tokens, solo.tokens) };
    if (!result) return { outcome: 'completed', tokens: tokens.length, equal: sameIds(tokens, solo.tokens) };
    return { outcome: 'completed', tokens: tokens.length, equal: sameIds(tokens, solo.tokens) && result.finishReason === solo.finishReason && result.text === solo.text };
  } finally {
    unwatch();
  }
}

async function viaOpenAI(q: PlannedRequest, spec: SoakSpec, ctx: RequestContext): Promise<Verdict> {
  const { engine, solo } = ctx;
  const plan = q.abort;
  const at = plan ? abortAt(plan, solo.tokens.length) : -1;
  const req: ChatCompletionRequest = {
    messages: ctx.input as ChatMessage[], max_tokens: spec.maxTokens, temperature: 0, ignore_eos: spec.ignoreEos, request_id: q.id,
    ...(spec.compression ? { kv_compression: spec.compression } : {}), ...(spec.cachePrefix ? { cache_prefix: spec.cachePrefix } : {}),
  };
  const unwatch = ctx.watch.watch(q.id, {
    queued: () => plan?.point === 'start' && void engine.abort(q.id),
    decoding: (count) => q.api === 'chat' && plan?.point === 'mid' && count === at && void engine.abort(q.id),
    // right at the end: the request has just finished; this abort must find nothing to stop
    finished: () => plan?.point === 'end' && q.api === 'chat' && void engine.abort(q.id),
  });
  try {
    if (q.api === 'chat') {
      const c = await engine.chat.completions.create({ ...req, stream: false });
      const ch = c.choices[0];
      const n = c.usage.completion_tokens;
      if (ch.finish_reason === 'abort') return { outcome: 'aborted', tokens: n, equal: solo.text.startsWith(ch.message.content) && n <= solo.tokens.length };
      return { outcome: 'completed', tokens: n, equal: ch.message.content === solo.text && n === solo.tokens.length && ch.finish_reason === solo.finishReason };
    }
    const stream = await engine.chat.completions.create({ ...req, stream: true });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    let usageTokens = -1;
    for await (const c of stream) {
      const ch = c.choices[0];
      if (c.usage) {
        finish = ch.finish_reason;
        usageTokens = c.usage.completion_tokens;
        if (plan?.point === 'end') {
          if (plan.how === 'break') break; // the final chunk seen: leaving now stops nothing
          await engine.abort(q.id);
        }
        continue;
      }
      text += ch.delta.content ?? '';
      chunks++;
      if (plan && plan.point === 'mid' && chunks === at) {
        if (plan.how === 'break') break;
        await engine.abort(q.id);
      }
    }
    if (finish === null || finish === 'abort') return { outcome: 'aborted', tokens: Math.max(usageTokens, chunks), equal: solo.text.startsWith(text) };
    return { outcome: 'completed', tokens: usageTokens, equal: text === solo.text && usageTokens === solo.tokens.length && finish === solo.finishReason };
  } finally {
    unwatch();
  }
}

function isPrefix(a: readonly number[], b: readonly number[]): boolean {
  return a.length <= b.length && a.every((x, i) => x === b[i]);
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && isPrefix(a, b);
}
