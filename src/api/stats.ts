/** What an engine reports about itself: per-request latencies, counters, and what it runs. */

/** Per-request figures, in milliseconds, derived from a request's timestamps. */
export interface RequestMetrics {
  queueDelayMs: number; //     arrival → first step that ran its tokens
  ttftMs: number; //           arrival → first token handed to the caller
  prefillTtftMs: number; //    arrival → end of its prefill (FastCache's harness stops here)
  tpotMs: number; //           mean time per output token after the first
  e2eMs: number; //            arrival → finished
  promptTokens: number;
  completionTokens: number;
  preemptions: number;
  /** Prompt tokens whose KV a press evicted (0 without compression). */
  evictedTokens: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  prefixHitTokens: number;
  /** Where those came from: pages already in the GPU pool, the CPU tier, the stored tier (IndexedDB, via the CPU tier). Absent for remote engines. */
  prefixFrom?: { gpu: number; cpu: number; stored: number };
}

export interface EngineStats {
  steps: number;
  requestsFinished: number;
  requestsAborted: number;
  requestsRunning: number;
  requestsWaiting: number;
  promptTokens: number; //       tokens run through prefill (incl. recomputation)
  generatedTokens: number;
  /** Output tokens per second since the engine first had work. */
  throughputTokPerS: number;
  meanBatch: { prefillTokens: number; decodeRows: number; compress: number };
  preemptions: number;
  pool: { pagesTotal: number; pagesInUse: number; peakPagesInUse: number; pageSize: number };
  gpuBytes: number;
  gpuPeakBytes: number;
  /** The compress stage so far: requests compressed, tokens evicted, pages freed, time spent. */
  compression: { requests: number; evictedTokens: number; freedPages: number; ms: number };
  /** Images: decodes of image files, vision-encoder runs, and images served from the feature cache instead. */
  vision: { imagesDecoded: number; encoderCalls: number; imagesEncoded: number; featureCacheHits: number };
  /**
   * Prefix cache: prompt tokens whose KV was reused instead of prefilled;
   * hitPages / missPages: full prompt pages found in the GPU pool or not (the GPU tier's hits and misses);
   * reusedPages: cached pages the pool handed out again (their contents lost).
   */
  prefixCache: { lookups: number; hitRequests: number; hitTokens: number; hitPages: number; missPages: number; cachedPages: number; reusedPages: number };
  /** The CPU tier below the GPU pool (absent when it is off). */
  tiers?: {
    /** The GPU pool's prefix pages: lookups' hits and misses, in pages (as prefixCache.hitPages / missPages). */
    gpu: { hits: number; misses: number };
    cpu: { budgetBytes: number; bytes: number; pages: number; demotedPages: number; promotedPages: number; hits: number; misses: number; evicted: number };
    transfers: { downloads: number; pagesDown: number; bytesDown: number; pagesUp: number; bytesUp: number; msDown: number };
    /** Preemption by offload: sequences swapped out, swapped back in, swaps that fell back to recompute, swapped out now. */
    swaps: { outs: number; ins: number; fallbacks: number; swappedNow: number };
    /** The persistent tier below the CPU tier (absent without `persist`): pages served, missed, written, refused by verification. */
    stored?: {
      backend: 'indexeddb' | 'memory'; budgetBytes: number; entries: number; bytes: number; hits: number; misses: number; written: number;
      /** Write batches the store refused (quota, an aborted transaction), retried once after evicting; skippedWrites: pages given up. */
      refusedWrites: number; skippedWrites: number; verifyFailures: number; evicted: number; collected: number; persisted: boolean | null; restoredTokens: number;
    };
  };
  /** Clients connected to the engine (the Worker hub; 1 in-process). */
  clients?: number;
  /** Lost GPU devices and the rebuilds after them (absent from engines that cannot lose one: remote). */
  device?: DeviceStats;
}

export interface DeviceStats {
  /** Devices lost under this engine. */
  losses: number;
  /** Requests in flight that a loss ended with finish reason 'error'. */
  stoppedRequests: number;
  /** Rebuilds after a lost device that succeeded. */
  recoveries: number;
  /** Rebuilds asked for by `reload()` on a working device. */
  reloads: number;
  /** How long the last rebuild took (new device, model files, weights upload), ms. */
  lastRebuildMs: number | null;
}

/** What an engine runs: the model, its precision, the KV pool, the adapter. */
export interface EngineInfo {
  modelId: string;
  architecture: string;
  /** Parameters of the text decoder (element counts, whatever the dtype). */
  parameters: number;
  /** The decoder layers' matrices: f32, f16, or block-quantized q8 / q4 (embeddings and head then f16). */
  weightDtype: 'f32' | 'f16' | 'q8' | 'q4';
  /** GPU bytes of the layers' matrices per parameter (scales included): 4, 2, ~1.13 (q8), ~0.63 (q4). */
  matrixBytesPerParam?: number;
  /** GPU bytes of all the decoder's weights. */
  weightBytes?: number;
  kvDtype: 'f32' | 'f16';
  adapter: string;
  kvPages: number;
  /** Bytes of one KV page (every layer's K and V of pageSize tokens): pages × this = the pool. */
  kvPageBytes: number;
  pageSize: number;
  /** Longest prompt + output the model takes. */
  maxPositions: number;
  /** The model takes images (a vision encoder is loaded). */
  vision: boolean;
  /** Where the vision encoder runs (null without one). */
  visionBackend: 'webgpu' | 'wasm' | null;
  /** The weights are random (a generated test model): its answers mean nothing. */
  randomWeights: boolean;
  /** The ratio of the model's learned compressor (press 'ccm', image tokens only), absent when it ships none. */
  ccmRatio?: number;
}
