import type { ModelConfig } from '../model/config.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import type { KvWindow } from '../api/chat-types.ts';

/** A rolling window lets a request run past the model's context, in bounded pages. */
export interface WindowLimits {
  window: KvWindow;
  /** Positions it may reach (the RoPE table's size). */
  maxPositions: number;
  /** Tokens of one prefill chunk (held on top of the window while it runs). */
  chunk: number;
}

/** Rejects a request that can never run, naming what is wrong and what to change. */
export function validateRequest(c: ModelConfig, kv: KVCacheManager, promptIds: number[], maxNewTokens: number, windowed: WindowLimits | null = null): void {
  const n = promptIds.length;
  const context = windowed?.maxPositions ?? c.maxPositions;
  if (n === 0) throw new RangeError('the prompt is empty: give at least one token');
  if (n >= context) {
    throw new RangeError(
      windowed
        ? `the prompt has ${n} tokens but a windowed request may reach ${context} positions (windowMaxPositions); shorten the prompt or load with a larger windowMaxPositions`
        : `the prompt has ${n} tokens but the model's context holds ${c.maxPositions}; shorten the prompt (or use a rolling window)`,
    );
  }
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new RangeError(`prompt token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
  }
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`maxTokens (max_tokens) must be a positive integer, got ${maxNewTokens}`);
  const P = kv.pageSize;
  const tokens = Math.min(n + maxNewTokens, context) - 1; // the last sampled token is never written
  let pages = Math.ceil(tokens / P);
  if (windowed) pages = Math.min(pages, Math.ceil(windowed.window.sinks / P) + Math.ceil((windowed.window.recent + windowed.chunk) / P) + 1);
  if (pages > kv.numTotalPages) {
    throw new RangeError(
      `the KV pool holds ${kv.numTotalPages} pages (${kv.numTotalPages * P} tokens) but this request needs ${pages} pages (${tokens} tokens${windowed ? ' in its window' : ''}); use a larger kvCacheBytes or fewer maxTokens`,
    );
  }
}
