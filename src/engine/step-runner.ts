import type { EmbedRows, KvCacheView, LlamaModel, StepInput } from '../model/llama.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { packAttentionBatch, type BatchRows } from '../kv/attention-batch.ts';
import type { StepPlan } from '../scheduler/step-plan.ts';
import type { Request } from '../scheduler/request.ts';

/**
 * Executes the forward part of a StepPlan: decode rows and prefill chunks of
 * many requests in one model step (one paged-attention dispatch), then
 * advances each request's counts and appends the sampled tokens.
 * Returns the requests that received a token, in row order.
 */
/** Where to put a request's observation-window q|k|v (one buffer per layer, f32 [rows, qkvDim]). */
export type CaptureTarget = (request: Request, rows: number) => readonly GPUBuffer[];

export interface Sampled {
  request: Request;
  token: number;
  /** The row's next-token logits, when its request wants them. */
  logits?: Float32Array;
}

export async function runStep(model: LlamaModel, kv: KVCacheManager, view: KvCacheView, plan: StepPlan, captureTo?: CaptureTarget): Promise<Sampled[]> {
  const parts: { request: Request; start: number; count: number; samples: boolean }[] = [
    ...plan.decode.map((r) => ({ request: r, start: r.numTokens - 1, count: 1, samples: true })),
    ...plan.prefill,
  ];
  if (parts.length === 0) return [];
  // attention and the KV manager count slots; RoPE counts the tokens' own positions
  const rows: BatchRows[] = parts.map((p) => ({ seqId: p.request.id, start: p.start - p.request.evictedTokens, count: p.count }));
  const packed = packAttentionBatch(kv, rows);
  const tokens = new Uint32Array(packed.nq);
  const logitRows: number[] = [];
  const sampling: StepInput['sampling'] = [];
  const positions = new Uint32Array(packed.nq);
  const capture: NonNullable<StepInput['capture']> = [];
  const embeds: EmbedRows[] = [];
  let row = 0;
  for (const p of parts) {
    tokens.set(p.request.tokens(p.start, p.count), row);
    embeds.push(...imageRows(p.request, p.start, p.count, row));
    for (let i = 0; i < p.count; i++) positions[row + i] = p.start + i;
    const w = Math.min(p.request.finalChunkMin, p.count);
    if (captureTo && p.samples && w > 0) {
      capture.push({ rows: Uint32Array.from({ length: w }, (_, i) => row + p.count - w + i), buffers: captureTo(p.request, w) });
    }
    row += p.count;
    if (p.samples) {
      logitRows.push(row - 1);
      sampling.push({ params: p.request.sampling, step: p.request.outputIds.length });
    }
  }
  const out = await model.step(
    { tokens, positions, slots: packed.slots, rowInfo: packed.rowInfo, blockTables: packed.blockTables, logitRows: Uint32Array.from(logitRows), sampling, ...(capture.length ? { capture } : {}), ...(embeds.length ? { embeds } : {}) },
    view,
    { returnLogits: parts.some((p) => p.samples && p.request.wantsLogits) },
  );
  const sampled: Sampled[] = [];
  const vocab = model.config.vocabSize;
  let s = 0;
  for (const p of parts) {
    const r = p.request;
    r.numComputedTokens = p.start + p.count;
    if (!p.samples) continue;
    const forced = r.forcedTokens?.[r.outputIds.length];
    const token = forced ?? out.tokens[s];
    const entry: Sampled = { request: r, token };
    if (r.wantsLogits && out.logits) entry.logits = out.logits.slice(s * vocab, (s + 1) * vocab);
    s++;
    r.outputIds.push(token);
    sampled.push(entry);
  }
  return sampled;
}

/** The step rows [row, row+count) that hold image tokens of `r`'s positions [start, start+count), with their feature rows. */
function imageRows(r: Request, start: number, count: number, row: number): EmbedRows[] {
  const out: EmbedRows[] = [];
  for (const img of r.images) {
    for (const run of img.runs) {
      const a = Math.max(start, run.start);
      const b = Math.min(start + count, run.start + run.count);
      if (a < b) out.push({ row: row + a - start, count: b - a, source: img.features, sourceRow: run.featureRow + a - run.start });
    }
  }
  return out;
}
