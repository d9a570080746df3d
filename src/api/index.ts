/** The library's public types: what a page needs to talk to any engine. */
export type { ChatEngine, ChatEngineFactory, ChatCompletionsApi } from './chat-engine.ts';
export type { CachePrefixOptions, ChatMessage, CompressionOptions, ContentPart, ImageInput, KvWindow, LoadProgress, PixelData } from './chat-types.ts';
export type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, FinishReasonOpenAI, Usage } from './openai-types.ts';
export type { EngineInfo, EngineStats, RequestMetrics } from './stats.ts';
export type { CacheUsage, EngineCache, StoredCacheEntry } from './cache.ts';
