import type { PrefixCache } from '../kv/prefix-cache.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import type { Request } from './request.ts';
import type { PrefillChunk, StepPlan } from './step-plan.ts';

/**
 * Continuous batching with stage queues (FastCache): each step the running
 * requests are grouped by their derived stage — compress, decode, prefill —
 * and a plan is formed under per-stage limits and one token budget. Decode
 * goes first so running generations never stall; prefill fills what is left
 * of the budget in chunks, so a long prompt is spread over several steps.
 * Admission is by free pages; when decode cannot get a slot, the newest
 * running request is preempted (its pages freed, recomputed later).
 */
export interface SchedulerConfig {
  /** Rows (tokens) in one forward step. */
  maxBatchTokens: number;
  /** Sequences sampled in one step (decode rows + prompts that finish). */
  maxSampledRows: number;
  /** Tokens of one request's prompt per step. */
  maxPrefillChunk: number;
  /** Requests holding KV pages at once. */
  maxRunning: number;
  /** Requests through the compress stage per step. */
  maxCompressBatch: number;
  /** Pages left free when admitting a request, so running decodes can grow. */
  admissionReservePages: number;
}

export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = {
  maxBatchTokens: 64,
  maxSampledRows: 16,
  maxPrefillChunk: 64,
  maxRunning: 16,
  maxCompressBatch: 8,
  admissionReservePages: 1,
};

export class Scheduler {
  readonly config: SchedulerConfig;
  /** Oldest first. */
  private waiting: Request[] = [];
  private running: Request[] = [];
  private preemptions = 0;

  constructor(
    private readonly kv: KVCacheManager,
    config: Partial<SchedulerConfig> = {},
    private readonly prefix: PrefixCache | null = null,
  ) {
    this.config = { ...DEFAULT_SCHEDULER_CONFIG, ...config };
    const c = this.config;
    if (c.maxPrefillChunk > c.maxBatchTokens) throw new RangeError(`maxPrefillChunk (${c.maxPrefillChunk}) cannot exceed maxBatchTokens (${c.maxBatchTokens})`);
    for (const [k, v] of Object.entries(c)) {
      if (!Number.isInteger(v) || v < (k === 'admissionReservePages' ? 0 : 1)) throw new RangeError(`scheduler setting ${k} must be a positive integer, got ${v}`);
    }
  }

  // ---------------------------------------------------------------- public API

  add(r: Request): void {
    this.waiting.push(r);
  }

  /** Removes a request wherever it is and frees its pages at once. */
  abort(id: string): Request | null {
    const r = this.remove(id);
    if (r) {
      if (this.kv.has(r.id)) this.kv.free(r.id);
      r.finishReason ??= 'abort';
    }
    return r;
  }

  /** A request that ended normally: its pages go back to the pool. */
  finish(r: Request): void {
    this.remove(r.id);
    if (this.kv.has(r.id)) this.kv.free(r.id);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numPreemptions(): number {
    return this.preemptions;
  }

  schedule(): StepPlan {
    const plan: StepPlan = { decode: [], prefill: [], compress: [], preempted: [] };
    this.planCompress(plan);
    this.planDecode(plan);
    this.planPrefill(plan);
    if (plan.decode.length + plan.prefill.length + plan.compress.length === 0 && this.running.length > 1) {
      // every running prompt is stuck for pages: free the newest so the oldest can finish
      this.preempt(this.running[this.running.length - 1], plan);
      this.planPrefill(plan);
    }
    return plan;
  }

  debugString(): string {
    const fmt = (r: Request) => `${r.id}:${r.stage}:${r.numComputedTokens}/${r.numTokens}`;
    return `running [${this.running.map(fmt).join(' ')}] waiting [${this.waiting.map(fmt).join(' ')}] free pages ${this.kv.numFreePages}`;
  }

  // ---------------------------------------------------------------- stages

  private planCompress(plan: StepPlan): void {
    for (const r of this.running) {
      if (plan.compress.length >= this.config.maxCompressBatch) break;
      if (r.stage === 'compress') plan.compress.push(r);
    }
  }

  private planDecode(plan: StepPlan): void {
    for (const r of [...this.running]) {
      if (plan.decode.length >= Math.min(this.config.maxSampledRows, this.config.maxBatchTokens)) break;
      if (r.stage !== 'decode' || !this.running.includes(r)) continue;
      if (this.allocateOrPreempt(r, plan)) plan.decode.push(r);
    }
  }

  private planPrefill(plan: StepPlan): void {
    const c = this.config;
    let budget = c.maxBatchTokens - plan.decode.length - plan.prefill.reduce((n, p) => n + p.count, 0);
    let sampled = plan.decode.length + plan.prefill.filter((p) => p.samples).length;
    const chunk = (r: Request): boolean => {
      const remaining = r.numTokens - r.numComputedTokens;
      const window = Math.min(r.finalChunkMin, c.maxPrefillChunk);
      let count = Math.min(remaining, budget, c.maxPrefillChunk);
      if (count === remaining && sampled >= c.maxSampledRows) count = window > 0 ? 0 : count - 1; // no sampling room: stop short
      // a press scores with the queries of the prompt's last `window` tokens: keep them in one chunk
      if (count < remaining && remaining - count < window) count = remaining - window;
      if (count <= 0 || !this.kv.allocateSlots(r.id, count)) return false;
      const p: PrefillChunk = { request: r, start: r.numComputedTokens, count, samples: count === remaining };
      plan.prefill.push(p);
      budget -= count;
      if (p.samples) sampled++;
      return true;
    };
    for (const r of this.running) {
      if (budget <= 0) return;
      if (r.stage === 'prefill' && !plan.prefill.some((p) => p.request === r)) chunk(r);
    }
    while (this.waiting.length > 0 && this.running.length < c.maxRunning && budget > 0) {
      const r = this.waiting[0];
      this.attachPrefix(r);
      const held = this.kv.has(r.id) ? this.kv.blockTable(r.id).length : 0;
      const pagesNeeded = this.kv.pagesFor(r.numTokens) - held + c.admissionReservePages;
      if ((this.kv.numFreePages < pagesNeeded && this.running.length > 0) || !chunk(r)) {
        this.detachPrefix(r);
        return;
      }
      this.waiting.shift();
      this.running.push(r);
    }
  }

  // ---------------------------------------------------------------- helpers

  /** A request about to be admitted starts on the cached pages of its longest known prefix. */
  private attachPrefix(r: Request): void {
    if (!this.prefix || !r.prefixCacheable || this.kv.has(r.id) || r.numComputedTokens > 0) return;
    // at least the last token is computed: its step samples the next one
    r.prefixHitTokens = this.prefix.attach(r, r.numTokens - 1);
    r.numComputedTokens = r.prefixHitTokens;
  }

  /** Undoes attachPrefix when the request could not be admitted after all. */
  private detachPrefix(r: Request): void {
    if (r.prefixHitTokens === 0) return;
    if (this.kv.has(r.id)) this.kv.free(r.id);
    r.numComputedTokens = 0;
    r.prefixHitTokens = 0;
  }

  /** One more slot for `r`, preempting newer running requests while the pool is full. */
  private allocateOrPreempt(r: Request, plan: StepPlan): boolean {
    while (!this.kv.allocateSlots(r.id, 1)) {
      const victim = this.running[this.running.length - 1];
      this.preempt(victim, plan);
      if (victim === r) return false;
    }
    return true;
  }

  private preempt(r: Request, plan: StepPlan): void {
    this.remove(r.id);
    if (this.kv.has(r.id)) this.kv.free(r.id);
    r.resetComputed();
    this.preemptions++;
    plan.preempted.push(r);
    plan.decode = plan.decode.filter((x) => x !== r);
    plan.compress = plan.compress.filter((x) => x !== r);
    plan.prefill = plan.prefill.filter((x) => x.request !== r);
    // back to the queue in arrival order, ahead of newer arrivals
    const at = this.waiting.findIndex((w) => w.times.arrival > r.times.arrival);
    this.waiting.splice(at < 0 ? this.waiting.length : at, 0, r);
  }

  private remove(id: string): Request | null {
    for (const list of [this.running, this.waiting]) {
      const i = list.findIndex((r) => r.id === id);
      if (i >= 0) return list.splice(i, 1)[0];
    }
    return null;
  }
}
