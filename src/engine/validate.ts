import type { ModelConfig } from '../model/config.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';

/** Rejects a request that can never run, naming what is wrong and what to change. */
export function validateRequest(c: ModelConfig, kv: KVCacheManager, pageSize: number, promptIds: number[], maxNewTokens: number): void {
  const n = promptIds.length;
  if (n === 0) throw new RangeError('the prompt is empty: give at least one token');
  if (n >= c.maxPositions) throw new RangeError(`the prompt has ${n} tokens but the model's context holds ${c.maxPositions}; shorten the prompt`);
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new RangeError(`prompt token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
  }
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`maxTokens (max_tokens) must be a positive integer, got ${maxNewTokens}`);
  const tokens = Math.min(n + maxNewTokens, c.maxPositions) - 1; // the last sampled token is never written
  const pages = Math.ceil(tokens / pageSize);
  if (pages > kv.numTotalPages) {
    throw new RangeError(
      `the KV pool holds ${kv.numTotalPages} pages (${kv.numTotalPages * pageSize} tokens) but this request needs ${pages} pages (${tokens} tokens); use a larger kvCacheBytes or fewer maxTokens`,
    );
  }
}
