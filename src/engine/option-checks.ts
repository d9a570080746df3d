/**
 * Type checks on what a JavaScript caller passes (GenerateOptions, and a
 * chat.completions request's fields under their OpenAI names), before
 * anything is prepared or queued. TypeScript's types do not reach callers
 * from plain JS, JSON or a Worker message: `stop: [null]`, `temperature:
 * "0.5"` or `seed: {}` would otherwise be coerced or crash deep in the
 * engine. Each error names the field, what it got and what it takes; value
 * ranges that depend on the model or pool are checked later (validate.ts,
 * input.ts).
 */
import type { ChatCompletionRequest } from '../api/openai-types.ts';
import type { GenerateOptions } from './types.ts';

type Check = (v: unknown) => boolean;

const isInt: Check = (v) => Number.isSafeInteger(v);
const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isBool: Check = (v) => typeof v === 'boolean';
const isObj: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrings: Check = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isId: Check = (v) => typeof v === 'string' && v.length > 0 && v.length <= 256;

/** Fails when `v` is present (not undefined) and not what `ok` accepts. */
function field(name: string, v: unknown, ok: Check, takes: string): void {
  if (v !== undefined && !ok(v)) throw new TypeError(`'${name}' must be ${takes}, got ${show(v)}`);
}

/** A number field: TypeError for what is no number, RangeError (naming the range) for one outside [lo, hi]. */
function ranged(name: string, v: unknown, lo: number, hi: number): void {
  if (v === undefined) return;
  if (!isNum(v)) throw new TypeError(`'${name}' must be a number between ${lo} and ${hi}, got ${show(v)}`);
  if (!((v as number) >= lo && (v as number) <= hi)) throw new RangeError(`'${name}' must be between ${lo} and ${hi}, got ${v}`);
}

/** GenerateOptions as the engine's own callers name them. */
export function checkGenerateOptions(o: GenerateOptions): void {
  if (!isObj(o)) throw new TypeError(`generate options must be an object, got ${show(o)}`);
  field('maxTokens', o.maxTokens, isInt, 'a positive integer');
  field('sampling', o.sampling, isObj, 'an object { temperature?, topK?, topP?, seed? }');
  const s = o.sampling ?? {};
  ranged('sampling.temperature', s.temperature, 0, 100);
  field('sampling.topK', s.topK, (v) => isInt(v) && (v as number) >= 0, 'an integer ≥ 0');
  ranged('sampling.topP', s.topP, 0, 1);
  field('sampling.seed', s.seed, isInt, 'an integer');
  field('stop', o.stop, isStrings, 'an array of strings');
  field('ignoreEos', o.ignoreEos, isBool, 'true or false');
  field('requestId', o.requestId, isId, 'a string of 1 to 256 characters');
  kvFields({ compression: 'compression', window: 'window', cachePrefix: 'cachePrefix' }, o);
  field('forceTokens', o.forceTokens, (v) => Array.isArray(v) && v.every(isInt), 'an array of token ids');
  field('returnLogits', o.returnLogits, isBool, 'true or false');
  field('signal', o.signal, (v) => typeof AbortSignal !== 'undefined' && v instanceof AbortSignal, 'an AbortSignal');
}

/** The KV options (a press, a window, a cache prefix), under the names the caller used. */
function kvFields(names: Record<'compression' | 'window' | 'cachePrefix', string>, o: Pick<GenerateOptions, 'compression' | 'window' | 'cachePrefix'>): void {
  field(names.compression, o.compression, isObj, 'an object { press, ratio, window?, region? }');
  if (o.compression) compressionFields(names.compression, o.compression);
  field(names.window, o.window, isObj, 'an object { sinks, recent }');
  field(names.cachePrefix, o.cachePrefix, isObj, "an object { until: 'image' | 'system' | <tokens>, press, ratio }");
  if (o.cachePrefix) compressionFields(names.cachePrefix, o.cachePrefix);
}

function compressionFields(name: string, c: { press: unknown; ratio: unknown; window?: unknown }): void {
  field(`${name}.press`, c.press, (v) => typeof v === 'string', 'the name of a press');
  if (c.press === undefined) throw new TypeError(`'${name}.press' is missing: name a press (e.g. 'snapkv')`);
  field(`${name}.ratio`, c.ratio, isNum, 'a number in [0, 1)');
  if (c.ratio === undefined) throw new TypeError(`'${name}.ratio' is missing: give the fraction of tokens to evict, in [0, 1)`);
  field(`${name}.window`, c.window, (v) => isInt(v) && (v as number) >= 1, 'a positive integer');
}

/** A chat.completions request's fields, named as the caller sent them (OpenAI's names). */
export function checkChatRequest(req: ChatCompletionRequest): void {
  if (!isObj(req)) throw new TypeError(`the request must be an object { messages, ... }, got ${show(req)}`);
  field('model', req.model, (v) => typeof v === 'string', 'a string');
  field('stream', req.stream, isBool, 'true or false');
  field('max_tokens', req.max_tokens, isInt, 'a positive integer'); // its range: validate.ts, beside the pool's
  ranged('temperature', req.temperature, 0, 2);
  ranged('top_p', req.top_p, 0, 1);
  field('top_k', req.top_k, (v) => isInt(v) && (v as number) >= 0, 'an integer ≥ 0');
  field('seed', req.seed, isInt, 'an integer');
  field('stop', req.stop, (v) => typeof v === 'string' || isStrings(v), 'a string or an array of strings');
  field('ignore_eos', req.ignore_eos, isBool, 'true or false');
  field('request_id', req.request_id, isId, 'a string of 1 to 256 characters');
  kvFields({ compression: 'kv_compression', window: 'kv_window', cachePrefix: 'cache_prefix' }, { compression: req.kv_compression, window: req.kv_window, cachePrefix: req.cache_prefix });
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 37) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array (${v.length} items)`;
  return typeof v === 'object' ? 'an object' : typeof v;
}
