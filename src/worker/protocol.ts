/**
 * Everything the page may ask of the engine Worker, through comlink. Only
 * plain data and comlink-proxied callbacks cross; errors cross as Error
 * objects ({name, message}) which comlink re-throws on the page's side.
 */
import type { CompressionOptions, LoadProgress } from '../engine/types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../engine/openai-types.ts';
import type { EngineStats } from '../scheduler/metrics.ts';
import type { SchedulerConfig } from '../scheduler/scheduler.ts';

export interface WorkerLoadOptions {
  kvDtype?: 'f32' | 'f16';
  kvCacheBytes?: number;
  kvPages?: number;
  pageSize?: number;
  prefillChunk?: number;
  weightDtype?: 'f32' | 'f16' | 'auto';
  scheduler?: Partial<SchedulerConfig>;
  /** Default KV compression for every request (a request's kv_compression overrides it). */
  compression?: CompressionOptions;
  /** Share KV pages of equal prompt prefixes (default true). */
  prefixCache?: boolean;
  /** Vision encoder backend: 'auto' (default: WebGPU on the engine's device, else wasm), 'webgpu' or 'wasm'. */
  vision?: { backend?: 'auto' | 'webgpu' | 'wasm' };
  /** GPU bytes kept for past images' features (default 32 MiB). */
  imageCacheBytes?: number;
}

export interface LoadedInfo {
  modelId: string;
  architecture: string;
  parameters: number;
  adapter: string;
  kvPages: number;
  pageSize: number;
  /** The model takes images (a vision encoder is loaded). */
  vision: boolean;
  /** The weights are random (a generated test model): its answers mean nothing. */
  randomWeights: boolean;
}

export interface EngineWorkerApi {
  load(modelRef: string, opts: WorkerLoadOptions, onProgress?: (p: LoadProgress) => void): Promise<LoadedInfo>;
  /** Non-streaming: resolves with the completion. Streaming: each chunk goes to onChunk; resolves with null at the end. */
  createCompletion(req: ChatCompletionRequest, onChunk?: (c: ChatCompletionChunk) => void | Promise<void>): Promise<ChatCompletion | null>;
  abort(requestId: string): boolean;
  stats(): EngineStats;
  resetStats(): void;
}
