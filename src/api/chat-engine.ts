/**
 * The one interface every engine implements — the in-process `Engine`, the
 * Worker client `WorkerEngine`, and a remote OpenAI-compatible client — so
 * that the UI, the CLI and the benchmarks take "an engine" and never know
 * where it runs (web-llm's MLCEngineInterface, minus the casts).
 */
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from './openai-types.ts';
import type { LoadProgress } from './chat-types.ts';
import type { EngineInfo, EngineStats } from './stats.ts';
import type { EngineCache } from './cache.ts';

export interface ChatCompletionsApi {
  create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface ChatEngine {
  readonly chat: { readonly completions: ChatCompletionsApi };
  /** Stops a request of this caller's by id; resolves false when no such request is running. */
  abort(requestId: string): Promise<boolean>;
  info(): Promise<EngineInfo>;
  /** Counters, where the engine keeps them (a remote server may not). */
  stats?(): Promise<EngineStats>;
  /** The KV cache by tier, where the engine keeps one across requests (in-process and Worker engines). */
  readonly cache?: EngineCache;
}

/**
 * What a model picker takes: loads `modelRef` and resolves with the engine
 * that runs it, which replaces the one the factory handed out before (it may
 * be the same object, re-pointed). Whoever makes the factory owns the engines.
 */
export type ChatEngineFactory<E extends ChatEngine = ChatEngine> = (modelRef: string, onProgress?: (p: LoadProgress) => void) => Promise<E>;
