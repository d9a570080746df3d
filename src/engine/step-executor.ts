import type { EmbedRows, KvCacheView, LlamaModel, StepInput, StepOptions } from '../model/llama.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { packAttentionBatch, type BatchRows } from '../kv/attention-batch.ts';
import type { StepOutcome, StepPlan } from '../scheduler/step-plan.ts';
import type { Request } from '../scheduler/request.ts';
import type { CompressStage } from './compress-stage.ts';
import type { PageTransfer } from '../kv/tiers/page-transfer.ts';

/**
 * Runs one StepPlan on the GPU: the compress stage (its requests' presses,
 * one submit), then decode rows and prefill chunks of many requests in one
 * model step (one paged-attention dispatch over every sequence). It reads
 * request state and writes none: what happened comes back as a StepOutcome
 * for `Scheduler.update` (vLLM's ModelRunnerOutput).
 */
export class StepExecutor {
  private readonly inflight = new Set<Promise<void>>();
  /** Pages the last step copied to and from the CPU tier. */
  lastMoves = { down: 0, up: 0 };

  /** Set by benchmarks (bench/suites/batch.ts): the forward step fills in `phases` and is timed by `timer`. */
  profile: Pick<StepOptions, 'phases' | 'timer'> | null = null;

  /** `transfer`: moves pages between the pool and the CPU tier (null when the engine has no CPU tier). */
  constructor(
    private readonly model: LlamaModel,
    private readonly kv: KVCacheManager,
    private readonly view: KvCacheView,
    readonly compress: CompressStage,
    private readonly transfer: PageTransfer | null = null,
  ) {}

  async execute(plan: StepPlan): Promise<StepOutcome> {
    for (const r of plan.preempted) if (!r.swapped) this.compress.drop(r.id); // a recompute captures its window again; a swap keeps it
    this.moveTiers();
    const compressed = await this.compress.run(plan.compress.filter((r) => !r.finished));
    // a request aborted while the compress stage ran has already given its pages back: drop its rows
    const sampled = await this.forward({ ...plan, decode: plan.decode.filter((r) => !r.finished), prefill: plan.prefill.filter((p) => !p.request.finished) });
    return { sampled, compressed };
  }

  /** Resolves when every page download started so far has landed in its tier (or failed: that only loses cache entries). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  // ---------------------------------------------------------------- tiers

  /**
   * The copies the plan owes the tiers, before anything of this step is
   * submitted: pages handed out again are downloaded (one batch; the bytes
   * reach the CPU tier when the map resolves, off the critical path), then
   * pages found in the CPU tier are uploaded into their fresh pages.
   */
  private moveTiers(): void {
    const { downloads, uploads } = this.kv.drainTransfers();
    this.lastMoves = { down: downloads.length, up: uploads.length };
    if (downloads.length && this.transfer) {
      const job = this.transfer.download(downloads.map((d) => d.page)).then((data) => data.forEach((b, i) => downloads[i].done(b)));
      this.inflight.add(job);
      void job.finally(() => this.inflight.delete(job)).catch(() => {}); // a failed download only loses cache entries
    }
    if (uploads.length) {
      if (!this.transfer) throw new Error('StepExecutor: pages to upload but no PageTransfer');
      this.transfer.upload(uploads.map((u) => u.page), uploads.map((u) => u.data));
    }
  }

  // ---------------------------------------------------------------- the forward step

  private async forward(plan: StepPlan): Promise<StepOutcome['sampled']> {
    const parts = [
      ...plan.decode.map((r) => ({ request: r, start: r.numTokens - 1, count: 1, samples: true, captureWindow: 0 })),
      ...plan.prefill,
    ];
    if (parts.length === 0) return [];
    // attention and the KV manager count slots; RoPE counts the tokens' own positions
    const rows: BatchRows[] = parts.map((p) => ({ seqId: p.request.id, start: p.start - this.kv.positionOffset(p.request.id), count: p.count }));
    const packed = packAttentionBatch(this.kv, rows);
    const tokens = new Uint32Array(packed.nq);
    const positions = new Uint32Array(packed.nq);
    const logitRows: number[] = [];
    const sampling: StepInput['sampling'] = [];
    const capture: NonNullable<StepInput['capture']> = [];
    const embeds: EmbedRows[] = [];
    const sampledBy: Request[] = [];
    const rowMask = parts.some((p) => p.request.window) ? new Uint32Array(2 * packed.nq) : null;
    let row = 0;
    for (const p of parts) {
      if (rowMask && p.request.window) windowRows(rowMask, row, p.request, p.start, p.count, this.kv.pageSize, this.kv.positionOffset(p.request.id));
      tokens.set(p.request.tokens(p.start, p.count), row);
      embeds.push(...imageRows(p.request, p.start, p.count, row));
      for (let i = 0; i < p.count; i++) positions[row + i] = p.start + i;
      const w = p.captureWindow;
      if (w > 0) capture.push({ rows: Uint32Array.from({ length: w }, (_, i) => row + p.count - w + i), buffers: this.compress.captureFor(p.request, w) });
      row += p.count;
      if (p.samples) {
        logitRows.push(row - 1);
        sampling.push({ params: p.request.sampling, step: p.request.outputIds.length });
        sampledBy.push(p.request);
      }
    }
    const out = await this.model.step(
      { tokens, positions, slots: packed.slots, rowInfo: packed.rowInfo, blockTables: packed.blockTables, logitRows: Uint32Array.from(logitRows), sampling, ...(capture.length ? { capture } : {}), ...(embeds.length ? { embeds } : {}), ...(rowMask ? { rowMask } : {}) },
      this.view,
      { ...this.profile, returnLogits: sampledBy.some((r) => r.wantsLogits) },
    );
    const vocab = this.model.config.vocabSize;
    return sampledBy.map((request, s) => {
      const logits = request.wantsLogits && out.logits ? out.logits.slice(s * vocab, (s + 1) * vocab) : undefined;
      return logits ? { request, token: out.tokens[s], logits } : { request, token: out.tokens[s] };
    });
  }
}

/**
 * The masked key slots [A, B) of a windowed request's rows: a query at
 * position q sees positions < sinks and > q - recent. Slots below the first
 * page after the sinks hold their own positions; later slots hold
 * slot + positionOffset (the window's dropped pages), so the recency bound
 * in slot space is q - recent + 1 there, minus the offset past them.
 */
function windowRows(mask: Uint32Array, row: number, r: Request, start: number, count: number, pageSize: number, offset: number): void {
  const { sinks, recent } = r.window!;
  const sinkSlots = Math.ceil(sinks / pageSize) * pageSize;
  for (let i = 0; i < count; i++) {
    const firstVisible = start + i - recent + 1; // a position
    const b = firstVisible <= sinkSlots ? Math.max(firstVisible, 0) : firstVisible - offset;
    if (b > sinks) mask.set([sinks, b], 2 * (row + i));
  }
}

/** The step rows [row, row+count) that hold image tokens of `r`'s positions [start, start+count), with their feature rows. */
function imageRows(r: Request, start: number, count: number, row: number): EmbedRows[] {
  const out: EmbedRows[] = [];
  for (const img of r.images) {
    for (const run of img.runs) {
      const a = Math.max(start, run.start);
      const b = Math.min(start + count, run.start + run.count);
      if (a >= b) continue;
      // the scheduler admits a request past an unencoded image only on a prefix hit that covers it
      if (!img.features) throw new Error(`request ${r.id}: image positions ${a}..${b - 1} must be computed but the image was not encoded (its KV was expected from the cache)`);
      out.push({ row: row + a - start, count: b - a, source: img.features, sourceRow: run.featureRow + a - run.start });
    }
  }
  return out;
}
