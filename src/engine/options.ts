import type { MatmulDtype } from '../gpu/kernels/matmul.ts';
import type { SchedulerConfig } from '../scheduler/scheduler.ts';
import type { PreemptionMode } from '../scheduler/preemption.ts';
import type { VisionEncoderOptions } from '../model/vision-encoder.ts';
import type { CachePrefixOptions, CompressionOptions, KvWindow, LoadProgress } from '../api/chat-types.ts';

/**
 * How an engine is built. Plain data only (no callbacks), so the same options
 * cross comlink to a Worker and JSON to a server: `EngineOptions` adds the
 * in-process callback.
 */
export interface EngineLoadOptions {
  /** Where a Hugging Face id ("org/name") is fetched from (default HF_ENDPOINT in Node, else https://huggingface.co): a mirror or a local server. */
  hubEndpoint?: string;
  /**
   * The decoder's weights on the GPU: 'auto' (default) keeps the file's precision (f16 files
   * f16, f32 / bf16 as f32); 'q8' / 'q4' quantize the layers' matrices at load in blocks of 32
   * (about 1.13 / 0.63 bytes per parameter; embeddings and head stay f16).
   */
  weightDtype?: MatmulDtype | 'auto';
  kvDtype?: 'f32' | 'f16';
  /** KV pool size in bytes (default 64 MiB) or pages. */
  kvCacheBytes?: number;
  kvPages?: number;
  pageSize?: number;
  /** Tokens of one prompt per step (default 64). */
  prefillChunk?: number;
  /** Batching policy; see SchedulerConfig. */
  scheduler?: Partial<SchedulerConfig>;
  /** KV compression applied to every request that does not set its own (default none). */
  compression?: CompressionOptions;
  /** Vision encoder: 'auto' (WebGPU on this engine's device where onnxruntime-web can, else wasm), or a backend / file. */
  vision?: Omit<VisionEncoderOptions, 'onProgress'>;
  /** GPU bytes kept for image features of past images (default 32 MiB). */
  imageCacheBytes?: number;
  /** Share KV pages of equal prompt prefixes across requests (default true). */
  prefixCache?: boolean;
  /**
   * Bytes of this thread's memory for KV pages the GPU pool hands out again
   * (the CPU tier; default 128 MiB; 0 turns it off). A later prompt that
   * starts the same finds them there instead of recomputing them.
   */
  cpuCacheBytes?: number;
  /**
   * How a request preempted for pages gives them back: 'recompute' (prefill
   * again later), 'offload' (swap its pages to the CPU tier and back), or
   * 'auto' (default: whichever costs less, at the rates measured here).
   */
  preemption?: PreemptionMode;
  /**
   * Keep prefix-cache pages across reloads, tabs and browser restarts: every
   * full page a prompt computes is written (in the background) to 'indexeddb'
   * (default) or 'memory' (a Map in this thread, shared by `name`: tests and
   * runtimes without IndexedDB), verified on the way back. Needs the prefix
   * cache and the CPU tier. budgetBytes: default 256 MiB; name: default 'fastcache-kv'; codec: default 'pool'.
   */
  persist?: PersistOptions;
  /** A compressed prefix kept for every request that does not set its own, e.g. every image prefix at SnapKV 0.5 (default none). */
  cachePrefix?: CachePrefixOptions;
  /** A rolling KV window for every request that does not set its own (default none). */
  window?: KvWindow;
  /**
   * Longest context (positions) a windowed request may reach, past the
   * model's own (default 4 × its max_position_embeddings): sizes the RoPE table.
   */
  windowMaxPositions?: number;
}

export interface PersistOptions {
  store?: 'indexeddb' | 'memory';
  budgetBytes?: number;
  name?: string;
  /** 'pool' (default): the pool's own bytes, lossless; 'int8': 8 bits per value with per-(layer, K/V, head) scales — about a quarter of f32, lossy. */
  codec?: 'pool' | 'int8';
}

export interface EngineOptions extends EngineLoadOptions {
  onProgress?: (p: LoadProgress) => void;
}
