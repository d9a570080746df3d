/** Types at the engine's public boundary. Names follow transformers.js (camelCase) and OpenAI. */
import type { RequestMetrics } from '../scheduler/metrics.ts';
import type { PixelData } from '../model/image-input.ts';

/** An image as the page or a caller has it: a URL (data:, blob:, http(s):) or the bytes/bitmap itself. */
export type ImageInput = string | Blob | ImageBitmap | PixelData;

/** OpenAI-style content parts; `{type: 'image', image}` is the extension for a File/Blob/ImageBitmap. */
export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string } }
  | { type: 'image'; image: Blob | ImageBitmap | PixelData };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

/** KV-cache compression of a request's prompt (kvpress-style presses; see src/kv/presses). */
export interface CompressionOptions {
  /** 'none', 'knorm', 'streaming-llm', 'sliding-window', 'snapkv', 'tova', 'observed-attention', 'expected-attention'. */
  press: string;
  /** Fraction of the compressible prompt tokens to evict, in [0, 1). */
  ratio: number;
  /** Observation window (last prompt tokens) for attention-based presses; default 16. */
  window?: number;
  /** The compressible tokens: 'all' (default), 'image' (only image tokens' span), or [start, end) of the prompt. */
  region?: 'all' | 'image' | { start: number; end: number };
}

export interface GenerateOptions {
  /** Overrides the engine's default compression for this request. */
  compression?: CompressionOptions;
  maxTokens?: number;
  sampling?: { temperature?: number; topK?: number; topP?: number; seed?: number };
  stop?: string[];
  /** Keep generating past the EOS token (benchmarks). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Caller-chosen id (unique among running requests), e.g. to abort it from elsewhere. */
  requestId?: string;
  /** Teacher forcing: emit these ids in order instead of sampling (e.g. to score a compressed cache on another run's continuation). */
  forceTokens?: number[];
  /** Return the next-token logits of every generated position (`GenerationResult.logits`). */
  returnLogits?: boolean;
}

export interface GenerationChunk {
  /** The sampled id, or -1 for text released at the end. */
  token: number;
  text: string;
}

export interface GenerationResult {
  id: string;
  text: string;
  tokens: number[];
  promptTokens: number;
  finishReason: 'stop' | 'length' | 'abort';
  timing: RequestMetrics & { tokensPerSecond: number };
  /** With returnLogits: logits[i] is the distribution token i was drawn from (f32 [vocab]). */
  logits?: Float32Array[];
}

export interface LoadProgress {
  file: string;
  loaded: number;
  total: number | null;
}

export type EngineEvent =
  | { kind: 'request-queued'; id: string; promptTokens: number }
  | { kind: 'step'; decode: number; prefillTokens: number; compress: number; preempted: number; pagesInUse: number }
  | { kind: 'request-finished'; id: string; finishReason: GenerationResult['finishReason']; metrics: RequestMetrics };
