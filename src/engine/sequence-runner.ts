import type { SamplingParams } from '../gpu/kernels/sample.ts';
import type { KvCacheView, LlamaModel, StepInput } from '../model/llama.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';

/**
 * One sequence through the model, alone: chunked prefill into pages, then
 * decode one token per step. Yields each sampled id; frees the sequence's
 * pages however it ends (done, abandoned by the caller, aborted, or an error).
 */
export interface SequenceRun {
  model: LlamaModel;
  kv: KVCacheManager;
  view: KvCacheView;
  promptIds: number[];
  maxNewTokens: number;
  sampling: SamplingParams;
  prefillChunk: number;
  signal?: AbortSignal;
}

export interface SequenceTiming {
  prefillMs: number;
  ttftMs: number;
  decodeMs: number;
}

let nextSeqId = 1;

export async function* runSequence(r: SequenceRun): AsyncGenerator<number, { timing: SequenceTiming; aborted: boolean }> {
  const { model, kv, promptIds } = r;
  const c = model.config;
  checkFits(r);
  const maxNew = Math.min(r.maxNewTokens, c.maxPositions - promptIds.length);
  const seq = nextSeqId++;
  const t0 = performance.now();
  const timing: SequenceTiming = { prefillMs: 0, ttftMs: 0, decodeMs: 0 };
  try {
    let token = -1;
    for (let start = 0; start < promptIds.length; start += r.prefillChunk) {
      if (r.signal?.aborted) return { timing, aborted: true };
      const chunk = promptIds.slice(start, start + r.prefillChunk);
      const last = start + chunk.length === promptIds.length;
      const out = await runRows(r, seq, start, chunk, last, 0);
      if (last) token = out;
    }
    timing.prefillMs = timing.ttftMs = performance.now() - t0;
    const tDecode = performance.now();
    for (let i = 0; i < maxNew; i++) {
      yield token;
      if (i + 1 === maxNew) break;
      if (r.signal?.aborted) return { timing, aborted: true };
      token = await runRows(r, seq, promptIds.length + i, [token], true, i + 1);
    }
    timing.decodeMs = performance.now() - tDecode;
    return { timing, aborted: false };
  } finally {
    if (kv.has(seq)) kv.free(seq);
  }
}

/** Appends `ids` at position `start` of the sequence and runs them; returns the sampled next id when `sample`. */
async function runRows(r: SequenceRun, seq: number, start: number, ids: number[], sample: boolean, step: number): Promise<number> {
  if (!r.kv.allocateSlots(seq, ids.length)) {
    throw new Error(`the KV pool has no free pages for ${ids.length} more tokens of this request (${r.kv.numFreePages} pages free); raise the pool size or wait for other requests`);
  }
  const n = ids.length;
  const input: StepInput = {
    tokens: Uint32Array.from(ids),
    positions: Uint32Array.from({ length: n }, (_, i) => start + i),
    slots: r.kv.slotsFor(seq, start, n),
    rowTables: new Uint32Array(n),
    blockTables: Uint32Array.from(r.kv.blockTable(seq)),
    logitRows: sample ? Uint32Array.of(n - 1) : new Uint32Array(0),
    sampling: sample ? [{ params: r.sampling, step }] : [],
  };
  const out = await r.model.step(input, r.view);
  return sample ? out.tokens[0] : -1;
}

function checkFits(r: SequenceRun): void {
  const c = r.model.config;
  const n = r.promptIds.length;
  if (n === 0) throw new RangeError('the prompt is empty: give at least one token');
  if (n >= c.maxPositions) {
    throw new RangeError(`the prompt has ${n} tokens but the model's context holds ${c.maxPositions}; shorten the prompt`);
  }
  for (const id of r.promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new RangeError(`prompt token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
  }
  if (!Number.isInteger(r.maxNewTokens) || r.maxNewTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${r.maxNewTokens}`);
  const tokens = Math.min(n + r.maxNewTokens, c.maxPositions) - 1; // the last sampled token is never written
  const pages = Math.ceil(tokens / r.view.pageSize);
  if (pages > r.kv.numTotalPages) {
    throw new RangeError(
      `the KV pool holds ${r.kv.numTotalPages} pages (${r.kv.numTotalPages * r.view.pageSize} tokens) but this request needs ${pages} pages (${tokens} tokens); use a larger kvCacheBytes or fewer maxTokens`,
    );
  }
}
