/**
 * The engine's input stage: whatever a caller sends (text, chat messages
 * with images, token ids, a prepared prompt) → a checked Request for the
 * scheduler. Bad input throws here, with a message naming what was wrong,
 * before anything is queued.
 */
import type { ModelConfig } from '../model/config.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import type { MultimodalMessage } from '../model/multimodal-processor.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import type { SamplingParams } from '../gpu/kernels/sample.ts';
import { keptPrefixSlots, Request, tailEnds, type CompressionSpec, type PromptImage } from '../scheduler/request.ts';
import type { CachePrefixOptions, ChatMessage, CompressionOptions, KvWindow } from '../api/chat-types.ts';
import { promptSource } from './stored-prefix.ts';
import { preparePrompt, type ImagePromptDeps } from './prompt-images.ts';
import { validateRequest } from './validate.ts';
import { checkGenerateOptions } from './option-checks.ts';
import { systemPrefixLength } from '../model/system-prefix.ts';
import type { GenerateOptions } from './types.ts';

/** A prompt ready for the scheduler: ids, and the images whose features fill image-token positions (pinned in the feature cache). */
export interface PreparedPrompt {
  ids: number[];
  images: PromptImage[];
  /** Tokens of its prefix the stored tier staged (Engine.prepare with persist). */
  restoredTokens?: number;
  /** Leading tokens that are the chat's system message(s), where the template renders them as a prefix of the prompt (cache_prefix until 'system'). */
  systemTokens?: number;
}

/** What `stream`, `generate` and `submit` take: text, chat messages (with images for a VLM), token ids, or a prepared prompt. */
export type PromptInput = string | ChatMessage[] | number[] | PreparedPrompt;

export interface InputDeps {
  modelId: string;
  config: ModelConfig;
  tokenizer: Tokenizer;
  kv: KVCacheManager;
  /** Longest observation window a press can get (the prefill chunk). */
  maxPrefillChunk: number;
  /** Throws for an unknown press (listing the known ones); true when it scores with the window's queries. */
  pressNeedsQueries(press: string): boolean;
  /** Throws when a press cannot take a request as asked (its trained ratio / region: ccm). */
  checkPress?(press: string, ratio: number, region: 'image' | 'all' | 'range', imageRuns: number): void;
  /** The image path of a vision model, null for a text model. */
  images: ImagePromptDeps | null;
  defaultCompression: CompressionOptions | null;
  defaultWindow: KvWindow | null;
  /** A cache prefix for requests that set none (applied where the prompt has one: an image for 'image'). */
  defaultCachePrefix: CachePrefixOptions | null;
  /**
   * Leading prompt tokens whose KV some tier holds (stored pages staged
   * first), counting a held compressed cache prefix as its whole span: an
   * image inside them is not encoded.
   */
  cachedTokens?(prompt: PreparedPrompt, compressed: CachedPrefixRef | null, tailEnds: readonly number[]): Promise<number>;
  /** Longest context a windowed request may reach (the RoPE table's size). */
  windowMaxPositions: number;
}

/** A compressed cache prefix as the tiers know it: its key, the prompt tokens it stands for, the slots it keeps. */
export interface CachedPrefixRef {
  key: string;
  end: number;
  keep: number;
}

let requestCounter = 0;

export class EngineInput {
  constructor(private readonly d: InputDeps) {
    if (d.defaultCompression) this.compressionSpec(d.defaultCompression, 1); // a bad default fails at load, not at the first request
    if (d.defaultWindow) this.checkWindow(d.defaultWindow);
  }

  /**
   * Token ids of a text prompt: text gets the tokenizer's special tokens (BOS),
   * messages the chat template. Messages for a vision model go through `prepare`.
   */
  encode(input: string | ChatMessage[] | number[]): number[] {
    if (Array.isArray(input) && input.every((x) => typeof x === 'number')) return input as number[];
    if (typeof input === 'string') return this.d.tokenizer.encode(input);
    const messages = input as ChatMessage[];
    if (this.d.images || messages.some((m) => typeof m.content !== 'string')) {
      throw new TypeError('messages with images (or for a vision model) need prepare(): use stream, generate or chat.completions.create, which call it');
    }
    return this.d.tokenizer.applyChatTemplate(messages as { role: string; content: string }[], { addGenerationPrompt: true });
  }

  /**
   * Any prompt → ids plus image features. An image the engine has seen (same
   * bytes, same model) is neither decoded nor preprocessed nor encoded again;
   * the features stay pinned until the request submitted with them ends.
   */
  async prepare(input: PromptInput, opts: GenerateOptions = {}): Promise<PreparedPrompt> {
    if (isPrepared(input)) return input;
    if (typeof input === 'string' || !input.length || typeof input[0] === 'number') return { ids: this.encode(input as string | number[]), images: [] };
    const messages = input as ChatMessage[];
    if (!this.d.images) {
      if (messages.some((m) => typeof m.content !== 'string' && m.content.some((p) => p.type !== 'text'))) {
        throw new TypeError(`model ${this.d.modelId} takes no images (it has no vision encoder); send text only or load a vision model`);
      }
      const text = messages.map((m) => ({ role: m.role, content: textOf(m.content) }));
      const ids = this.encode(text);
      const systemTokens = systemPrefixLength(ids, text, (sys) => this.d.tokenizer.applyChatTemplate(sys, { addGenerationPrompt: false }));
      return { ids, images: [], ...(systemTokens ? { systemTokens } : {}) };
    }
    const cached = this.d.cachedTokens;
    return preparePrompt({ ...this.d.images, ...(cached ? { cachedTokens: (p) => cached(p, this.cachePrefixOf(p, opts), this.tailEndsOf(p, opts)) } : {}) }, messages.map(toMultimodal));
  }

  /** A checked Request for `prompt` (its images stay pinned; the caller releases them if this throws). */
  request(prompt: PreparedPrompt, opts: GenerateOptions, stopTokenIds: readonly number[]): Request {
    checkGenerateOptions(opts);
    const c = this.d.config;
    const maxNew = opts.maxTokens ?? 128;
    const window = opts.window ?? this.d.defaultWindow;
    if (window) this.checkWindow(window);
    const compression = opts.compression ?? this.d.defaultCompression;
    if (window && compression && compression.ratio > 0 && compression.press !== 'none') {
      throw new RangeError('a request takes a rolling window or a KV compression press, not both: drop one of window / compression');
    }
    const cachePrefix = this.cachePrefixSpec(opts, prompt, window !== null || (opts.compression !== undefined && opts.compression.ratio > 0));
    const context = window ? this.d.windowMaxPositions : c.maxPositions;
    validateRequest(c, this.d.kv, prompt.ids, maxNew, window ? { window, maxPositions: context, chunk: this.d.maxPrefillChunk } : null);
    if (opts.forceTokens) {
      for (const t of opts.forceTokens) if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new RangeError(`forceTokens: id ${t} is outside the vocabulary`);
    }
    const sampling: SamplingParams = {
      temperature: opts.sampling?.temperature ?? 0, topK: opts.sampling?.topK ?? 0, topP: opts.sampling?.topP ?? 1, seed: opts.sampling?.seed ?? 0,
    };
    return new Request(opts.requestId ?? `req-${++requestCounter}`, prompt.ids, {
      maxNewTokens: Math.min(maxNew, context - prompt.ids.length),
      window,
      sampling,
      stopTokenIds: opts.ignoreEos ? [] : stopTokenIds,
      compression: cachePrefix ?? (compression ? this.compressionSpec(compression, prompt.ids.length, prompt.images) : null),
      forcedTokens: opts.forceTokens ?? null,
      wantsLogits: opts.returnLogits === true,
      images: prompt.images,
      restoredTokens: prompt.restoredTokens ?? 0,
      prefixEnd: this.plainPrefixEnd(opts, prompt),
    });
  }

  // ---------------------------------------------------------------- helpers

  /** A window is whole numbers, sinks ≤ recent, and no wider than the model's own context. */
  private checkWindow(w: KvWindow): void {
    const { sinks, recent } = w ?? ({} as KvWindow);
    if (!Number.isInteger(sinks) || sinks < 0) throw new RangeError(`window.sinks must be a non-negative integer, got ${JSON.stringify(sinks)}`);
    if (!Number.isInteger(recent) || recent < 1) throw new RangeError(`window.recent must be a positive integer, got ${JSON.stringify(recent)}`);
    if (sinks > recent) throw new RangeError(`window.sinks (${sinks}) must not exceed window.recent (${recent})`);
    const ctx = this.d.config.maxPositions;
    if (sinks + recent > ctx) throw new RangeError(`window sinks + recent = ${sinks + recent} is larger than the model's context (${ctx}); use a smaller window`);
  }

  /** The key and kept slots of the cache prefix `opts` give `prompt` (null without one, or when it cannot apply: request() will say why). */
  cachePrefixOf(prompt: PreparedPrompt, opts: GenerateOptions): CachedPrefixRef | null {
    try {
      const spec = this.cachePrefixSpec(opts, prompt, false);
      if (!spec?.prefix?.key) return null;
      const P = this.d.kv.pageSize, end = spec.prefix.end;
      return { key: spec.prefix.key, end, keep: keptPrefixSlots(end, spec.ratio, P) };
    } catch {
      return null;
    }
  }

  /** Where `prompt`'s prefix tails end (see Request.tailEnds): its last picture, and a ratio-0 cache prefix `opts` give it. */
  tailEndsOf(prompt: PreparedPrompt, opts: GenerateOptions): number[] {
    return tailEnds(prompt.ids.length, prompt.images, this.plainPrefixEnd(opts, prompt));
  }

  /** Where a ratio-0 cache prefix (the plain prefix cache, its end kept whole as a tail) ends in `prompt`; 0 without one, or where it cannot apply. */
  private plainPrefixEnd(opts: GenerateOptions, prompt: PreparedPrompt): number {
    const o = opts.cachePrefix ?? this.d.defaultCachePrefix;
    if (typeof o !== 'object' || o === null || o.ratio !== 0) return 0;
    return this.prefixEnd(o.until, prompt, () => null) ?? 0;
  }

  /**
   * The compression spec of a request's cache prefix (null without one): the
   * press on the prompt's first `end` tokens. An explicit option that cannot
   * apply is an error naming it; the engine default skips prompts it does not fit.
   */
  private cachePrefixSpec(opts: GenerateOptions, prompt: PreparedPrompt, otherKv: boolean): CompressionSpec | null {
    const o = opts.cachePrefix ?? this.d.defaultCachePrefix;
    if (!o) return null;
    const explicit = opts.cachePrefix !== undefined;
    if (otherKv) {
      if (explicit) throw new RangeError('a request takes cache_prefix or its own compression / window, not both: drop one');
      return null;
    }
    const fail = (why: string): null => {
      if (explicit) throw new RangeError(`cache_prefix: ${why}`);
      return null;
    };
    if (typeof o !== 'object' || o === null) return fail(`must be an object like { until: 'image', press: 'snapkv', ratio: 0.5 }, got ${JSON.stringify(o)}`);
    if (typeof o.ratio !== 'number' || !(o.ratio >= 0 && o.ratio < 1)) return fail(`ratio must be in [0, 1), got ${JSON.stringify(o.ratio)}`);
    const end = this.prefixEnd(o.until, prompt, fail);
    if (end === null) return null;
    if (o.ratio === 0) {
      this.d.pressNeedsQueries(o.press); // an unknown press is still an error
      return null; // ratio 0: the plain prefix cache keeps (and persists) these pages already
    }
    if (end >= prompt.ids.length) return fail(`the prefix (${end} tokens) must end before the prompt does (${prompt.ids.length} tokens)`);
    const P = this.d.kv.pageSize;
    if (keptPrefixSlots(end, o.ratio, P) < P) return fail(`a ${end}-token prefix at ratio ${o.ratio} keeps less than one page (${P} tokens): use a longer prefix or a lower ratio`);
    const spec = this.compressionSpec({ press: o.press, ratio: o.ratio, ...(o.window !== undefined ? { window: o.window } : {}) }, end);
    const key = this.d.kv.compressedPrefixKey(promptSource(prompt), end, spec);
    return { ...spec, region: { start: 0, end }, prefix: { end, key: key ?? '' } };
  }

  /** Where a cache prefix ends: after the last image token, after the system message(s), or a token count. */
  private prefixEnd(until: CachePrefixOptions['until'], prompt: PreparedPrompt, fail: (why: string) => null): number | null {
    if (until === 'image') {
      const runs = prompt.images.flatMap((i) => i.runs);
      if (!runs.length) return fail("until 'image' needs a prompt with an image");
      return Math.max(...runs.map((r) => r.start + r.count));
    }
    if (until === 'system') {
      if (!prompt.systemTokens) return fail("until 'system' needs chat messages that start with a system message (whose template renders it as the prompt's prefix)");
      return prompt.systemTokens;
    }
    if (typeof until === 'number' && Number.isInteger(until) && until > 0) return until;
    return fail(`until must be 'image', 'system' or a positive token count, got ${JSON.stringify(until)}`);
  }

  /** Checks a request's compression options and resolves its observation window. */
  private compressionSpec(o: CompressionOptions, promptTokens: number, images: readonly PromptImage[] = []): CompressionSpec {
    if (!(o.ratio >= 0 && o.ratio < 1)) throw new RangeError(`compression ratio must be in [0, 1), got ${o.ratio}`);
    const needsQueries = this.d.pressNeedsQueries(o.press); // throws for an unknown press, listing the known ones
    const window = needsQueries ? Math.min(o.window ?? 16, promptTokens) : 0;
    if (window > this.d.maxPrefillChunk) {
      throw new RangeError(`compression window ${window} exceeds the prefill chunk (${this.d.maxPrefillChunk}); use a smaller window`);
    }
    const region = compressionRegion(o.region, images);
    if (o.ratio > 0) {
      const kind = o.region === 'image' ? 'image' : o.region === undefined || o.region === 'all' ? 'all' : 'range';
      this.d.checkPress?.(o.press, o.ratio, kind, images.reduce((n, i) => n + i.runs.length, 0));
    }
    return { press: o.press, ratio: o.ratio, window, ...(region ? { region } : {}) };
  }
}

/** 'all' → the whole prompt; 'image' → the span of the image tokens (an error without images); a range as given. */
function compressionRegion(r: CompressionOptions['region'], images: readonly PromptImage[]): CompressionSpec['region'] {
  if (r === undefined || r === 'all') return undefined;
  if (r === 'image') {
    const runs = images.flatMap((i) => i.runs);
    if (!runs.length) throw new RangeError("compression region 'image' needs a prompt with an image");
    return { start: Math.min(...runs.map((x) => x.start)), end: Math.max(...runs.map((x) => x.start + x.count)) };
  }
  if (!(typeof r === 'object' && 0 <= r.start && r.start <= r.end)) {
    throw new RangeError(`compression region ${JSON.stringify(r)} is not 'all', 'image' or a range {start, end} of prompt tokens`);
  }
  return r;
}

export function isPrepared(input: PromptInput): input is PreparedPrompt {
  return typeof input === 'object' && !Array.isArray(input) && input !== null && Array.isArray((input as PreparedPrompt).ids);
}

function textOf(content: ChatMessage['content']): string {
  return typeof content === 'string' ? content : content.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** OpenAI content parts → the processor's: image_url and image parts both become images. */
function toMultimodal(m: ChatMessage): MultimodalMessage {
  if (typeof m.content === 'string') return { role: m.role, content: m.content };
  return {
    role: m.role,
    content: m.content.map((p) => {
      if (p.type === 'text') return { type: 'text' as const, text: p.text };
      if (p.type === 'image_url') return { type: 'image' as const, image: p.image_url.url };
      if (p.type === 'image') return { type: 'image' as const, image: p.image };
      throw new TypeError(`unknown content part type '${(p as { type: string }).type}' (use 'text', 'image_url' or 'image')`);
    }),
  };
}
