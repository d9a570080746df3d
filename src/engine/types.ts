/** Types at the engine's public boundary. Names follow transformers.js (camelCase) and OpenAI. */
import type { RequestMetrics } from '../api/stats.ts';
import type { CompressionOptions, KvWindow, CachePrefixOptions } from '../api/chat-types.ts';

export type { ChatMessage, CompressionOptions, ContentPart, ImageInput, KvWindow, LoadProgress } from '../api/chat-types.ts';

export interface GenerateOptions {
  /** Overrides the engine's default compression for this request. */
  compression?: CompressionOptions;
  /** A rolling KV window for this request (overrides the engine's default; see KvWindow). */
  window?: KvWindow;
  /** Keep (or adopt) a compressed prefix of this prompt (overrides the engine's default; see CachePrefixOptions). */
  cachePrefix?: CachePrefixOptions;
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
  /** 'error': the engine could not finish it (its GPU device was lost); `error` says why. */
  finishReason: 'stop' | 'length' | 'abort' | 'error';
  error?: string;
  timing: RequestMetrics & { tokensPerSecond: number };
  /** With returnLogits: logits[i] is the distribution token i was drawn from (f32 [vocab]). */
  logits?: Float32Array[];
}

export type EngineEvent =
  | { kind: 'request-queued'; id: string; promptTokens: number }
  /** A step is about to run: the requests in each part of its plan (listeners may abort some). */
  | { kind: 'step-start'; decode: string[]; prefill: string[]; compress: string[] }
  /** A step ran; `pagesDown`/`pagesUp`: pages it copied to / from the CPU tier (demotions and swap-outs / promotions and swap-ins). */
  | { kind: 'step'; decode: number; prefillTokens: number; compress: number; preempted: number; pagesInUse: number; pagesDown: number; pagesUp: number }
  | { kind: 'request-finished'; id: string; finishReason: GenerationResult['finishReason']; metrics: RequestMetrics }
  /** The GPU device was lost: requests in flight ended with finish reason 'error' and this message. */
  | { kind: 'device-lost'; message: string }
  /** The engine was built again (after a lost device, or reload()) in `ms`. */
  | { kind: 'device-recovered'; ms: number };
