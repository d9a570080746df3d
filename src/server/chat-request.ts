/**
 * The JSON body of `POST /v1/chat/completions` → the engine's
 * `ChatCompletionRequest`. The engine checks values (roles, ranges, the
 * model, prompt length, presses); this checks what it would misread from
 * JSON — the types of fields (`"0.5"` for a number, `1.5` for a seed, a
 * number for `stop`) — and the HTTP layer's own policy: images arrive as
 * data URLs only (the server fetches no URLs for its clients), and one
 * choice per request. Unknown fields are dropped; `null` means absent, as
 * in OpenAI's API.
 */
import type { ChatCompletionRequest } from '../api/openai-types.ts';
import type { CompressionOptions } from '../api/chat-types.ts';
import { ApiError, badParam } from './api-error.ts';

/** `model` names the server answers to: its served name (an alias) and the engine's own id. */
export interface ModelNames {
  served: string;
  engine: string;
}

type Json = Record<string, unknown>;

export function parseChatRequest(body: unknown, names: ModelNames): ChatCompletionRequest {
  if (!isObject(body)) throw new ApiError(400, 'the body must be a JSON object: {model, messages, ...}', 'invalid_value');
  const b = withoutNulls(body);
  const req = { messages: messagesOf(b.messages) } as ChatCompletionRequest;
  const model = optional(b, 'model', isString, 'a string');
  if (model !== undefined) req.model = model === names.served ? names.engine : model;
  const stream = optional(b, 'stream', isBoolean, 'true or false');
  if (stream !== undefined) req.stream = stream;
  // max_completion_tokens is the newer name (OpenAI deprecates max_tokens); it wins when both are sent
  const maxTokens = optional(b, 'max_tokens', Number.isInteger, 'an integer');
  const maxCompletionTokens = optional(b, 'max_completion_tokens', Number.isInteger, 'an integer');
  if ((maxCompletionTokens ?? maxTokens) !== undefined) req.max_tokens = (maxCompletionTokens ?? maxTokens) as number;
  for (const key of ['temperature', 'top_p'] as const) {
    const v = optional(b, key, isFiniteNumber, 'a number');
    if (v !== undefined) req[key] = v;
  }
  const topK = optional(b, 'top_k', Number.isInteger, 'an integer');
  if (topK !== undefined) req.top_k = topK as number;
  const seed = optional(b, 'seed', Number.isSafeInteger, 'an integer');
  if (seed !== undefined) req.seed = seed as number;
  const stop = optional(b, 'stop', (v) => isString(v) || (Array.isArray(v) && v.every(isString)), 'a string or an array of strings');
  if (stop !== undefined) req.stop = stop as string | string[];
  const ignoreEos = optional(b, 'ignore_eos', isBoolean, 'true or false');
  if (ignoreEos !== undefined) req.ignore_eos = ignoreEos;
  const id = optional(b, 'request_id', (v): v is string => isString(v) && v.length > 0 && v.length <= 256, 'a string of 1 to 256 characters');
  if (id !== undefined) req.request_id = id;
  const compression = optional(b, 'kv_compression', isObject, 'an object {press, ratio, window?, region?}');
  if (compression !== undefined) req.kv_compression = compressionOf(withoutNulls(compression));
  const window = optional(b, 'kv_window', isObject, 'an object {sinks, recent}');
  if (window !== undefined) {
    const w = withoutNulls(window);
    const sinks = optional(w, 'sinks', Number.isInteger, 'an integer', 'kv_window.sinks');
    const recent = optional(w, 'recent', Number.isInteger, 'an integer', 'kv_window.recent');
    req.kv_window = { sinks: (sinks as number | undefined) ?? 0, recent: recent as number }; // the engine checks the values
  }
  const n = optional(b, 'n', Number.isInteger, 'an integer');
  if (n !== undefined && n !== 1) throw badParam('n', `'n' must be 1: the server returns one choice per request (got ${String(n)})`);
  const options = optional(b, 'stream_options', isObject, 'an object {include_usage?}');
  if (options) optional(withoutNulls(options), 'include_usage', isBoolean, 'true or false', 'stream_options.include_usage'); // tolerated: the last chunk always carries usage
  return req;
}

/** Messages as the engine takes them; content parts checked and normalised (the engine checks roles and the rest). */
function messagesOf(messages: unknown): ChatCompletionRequest['messages'] {
  if (!Array.isArray(messages)) return messages as ChatCompletionRequest['messages']; // the engine says what it needs
  return messages.map((m, i) => (isObject(m) && Array.isArray(m.content) ? { ...m, content: m.content.map((p, j) => partOf(p, `messages[${i}].content[${j}]`)) } : m)) as ChatCompletionRequest['messages'];
}

function partOf(p: unknown, where: string): unknown {
  if (!isObject(p)) throw badParam(where, `${where} must be an object {type: 'text', text} or {type: 'image_url', image_url: {url}}`);
  if (p.type === 'text') {
    if (!isString(p.text)) throw badParam(`${where}.text`, `${where}.text must be a string`);
    return { type: 'text', text: p.text };
  }
  if (p.type === 'image_url') {
    const url = isString(p.image_url) ? p.image_url : isObject(p.image_url) ? p.image_url.url : undefined;
    if (!isString(url)) throw badParam(`${where}.image_url`, `${where}.image_url must be an object {url}`);
    if (!/^data:/i.test(url)) {
      throw badParam(`${where}.image_url.url`, `${where}.image_url.url must be a data URL (data:image/png;base64,...): the server does not fetch images for its clients`);
    }
    return { type: 'image_url', image_url: { url } };
  }
  throw badParam(`${where}.type`, `${where}.type must be 'text' or 'image_url' (images as data URLs); got ${JSON.stringify(p.type)}`);
}

function compressionOf(c: Json): CompressionOptions {
  const at = (k: string) => `kv_compression.${k}`;
  if (!isString(c.press)) throw badParam(at('press'), `${at('press')} must be a string (a press name, e.g. 'snapkv')`);
  if (!isFiniteNumber(c.ratio)) throw badParam(at('ratio'), `${at('ratio')} must be a number in [0, 1)`);
  const out: CompressionOptions = { press: c.press, ratio: c.ratio };
  const window = optional(c, 'window', Number.isInteger, 'an integer', at('window'));
  if (window !== undefined) out.window = window as number;
  const region = optional(c, 'region', (r) => r === 'all' || r === 'image' || (isObject(r) && Number.isInteger(r.start) && Number.isInteger(r.end)), "'all', 'image' or {start, end} (integers)", at('region'));
  if (region !== undefined) out.region = isObject(region) ? { start: region.start as number, end: region.end as number } : (region as 'all' | 'image');
  return out;
}

// ---------------------------------------------------------------- helpers

/** `obj[key]` when present and of the right type; a 400 naming the field otherwise. */
function optional<T>(obj: Json, key: string, ok: ((v: unknown) => v is T) | ((v: unknown) => boolean), what: string, name = key): T | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (!ok(v)) throw badParam(name, `'${name}' must be ${what}; got ${JSON.stringify(v)?.slice(0, 60)}`);
  return v as T;
}

function withoutNulls(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
