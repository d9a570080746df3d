import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { tailAfter } from '../kv/prefix-tails.ts';
import { keptPrefixSlots, type FinishReason, type PromptImage, type Request } from './request.ts';
import { checkPreemptionMode, type PreemptionCosts, type PreemptionMode } from './preemption.ts';
import type { PrefillChunk, StepOutcome, StepPlan } from './step-plan.ts';

/**
 * Continuous batching with stage queues (FastCache): each step the running
 * requests are grouped by their derived stage — compress, decode, prefill —
 * and a plan is formed under per-stage limits and one token budget. Decode
 * goes first so running generations never stall; prefill fills what is left
 * of the budget in chunks, so a long prompt is spread over several steps.
 * Admission is by free pages; when decode cannot get a slot, the newest
 * running request is preempted (its pages freed, recomputed later).
 *
 * The scheduler is the one writer of request state (vLLM's
 * update_from_output): `schedule()` plans a step, the executor runs it and
 * returns a StepOutcome, and `update(plan, outcome)` applies it — computed
 * counts, sampled tokens, compressions — and decides what finished.
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

/** What `update` hands back to the engine's output stage. */
export interface StepResult {
  /** Tokens appended this step, in row order, for the callers. */
  tokens: { request: Request; token: number; logits?: Float32Array }[];
  /** Requests that finished this step (EOS or length); their pages are already back in the pool. */
  finished: Request[];
}

export class Scheduler {
  readonly config: SchedulerConfig;
  private readonly costs: PreemptionCosts | null;
  /** Oldest first. */
  private waiting: Request[] = [];
  private running: Request[] = [];
  private preemptions = 0;
  private readonly preemptionMode: PreemptionMode;
  private readonly swapCounts = { out: 0, in: 0, fallbacks: 0 };
  /** Waiting requests held back until their images are encoded (their cached prefix no longer covers them). */
  private readonly wantFeatures = new Set<Request>();

  /** `preemption`: how a preempted request gives its pages back (see preemption.ts); `costs` decide 'auto'. */
  constructor(
    private readonly kv: KVCacheManager,
    config: Partial<SchedulerConfig> = {},
    preemption: { mode: PreemptionMode; costs?: PreemptionCosts } = { mode: 'recompute' },
  ) {
    this.preemptionMode = checkPreemptionMode(preemption.mode);
    this.costs = preemption.costs ?? null;
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
  abort(id: string, reason: Extract<FinishReason, 'abort' | 'error'> = 'abort'): Request | null {
    const r = this.find(id);
    if (r) this.finish(r, reason);
    return r;
  }

  /** Ends a request (a stop string, or EOS / length from `update`): its pages go back to the pool at once. */
  finish(r: Request, reason: FinishReason): void {
    if (r.finished) return;
    this.remove(r.id);
    this.wantFeatures.delete(r);
    this.kv.release(r.id);
    r.finishReason = reason;
    r.times.finished = performance.now();
  }

  /**
   * Applies what the executor did with `plan`: the planned tokens now have
   * KV, prompts that went through the compress stage are compressed, the
   * full pages of cacheable requests are published to the prefix cache, and
   * each sampled id is appended (or ends the request: EOS, max tokens).
   * Requests that finished (an abort) while the step ran are skipped.
   */
  update(plan: StepPlan, outcome: StepOutcome): StepResult {
    const now = performance.now();
    const result: StepResult = { tokens: [], finished: [] };
    for (const r of plan.compress) if (!r.finished) r.compressed = true;
    for (const c of outcome.compressed) {
      c.request.evictedTokens = c.evictedTokens;
      const prefix = c.request.compression?.prefix;
      if (prefix && !c.request.finished) this.kv.publishCompressed(c.request.id, prefix.key, prefix.end - c.evictedTokens);
    }
    for (const r of plan.decode) if (!r.finished) r.numComputedTokens = r.numTokens;
    for (const p of plan.prefill) {
      if (p.request.finished) continue;
      p.request.numComputedTokens = p.start + p.count;
      if (p.samples) p.request.times.prefillDone ??= now;
    }
    this.cachePages(plan); // before anything finishes: a request's pages outlive it in the cache
    for (const s of outcome.sampled) {
      const r = s.request;
      if (r.finished) continue;
      const token = r.forcedTokens?.[r.outputIds.length] ?? s.token;
      if (r.stopTokenIds.includes(token)) {
        this.finish(r, 'stop');
        result.finished.push(r);
        continue;
      }
      r.outputIds.push(token);
      r.times.firstToken ??= now;
      result.tokens.push(s.logits ? { request: r, token, logits: s.logits } : { request: r, token });
      if (r.outputIds.length >= r.maxNewTokens) {
        this.finish(r, 'length');
        result.finished.push(r);
      }
    }
    return result;
  }

  /** Requests that wait for image features before they can be admitted (the engine encodes them, then calls provideFeatures). */
  get needingFeatures(): readonly Request[] {
    return [...this.wantFeatures];
  }

  /** An image of `r` is encoded now: its features (pinned by the caller) join the request. */
  provideFeatures(r: Request, img: PromptImage, features: GPUBuffer): void {
    img.features = features;
    if (r.featurelessEnd === 0) this.wantFeatures.delete(r);
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

  /** Preemptions by swap-out, resumptions by swap-in, and swaps that fell back to recompute. */
  get swapStats(): { swapOuts: number; swapIns: number; fallbacks: number } {
    return { swapOuts: this.swapCounts.out, swapIns: this.swapCounts.in, fallbacks: this.swapCounts.fallbacks };
  }

  schedule(): StepPlan {
    const plan: StepPlan = { decode: [], prefill: [], compress: [], preempted: [] };
    for (const r of this.running) if (r.window) this.slideWindow(r);
    this.planCompress(plan);
    this.planDecode(plan);
    this.planPrefill(plan);
    if (plan.decode.length + plan.prefill.length + plan.compress.length === 0 && this.running.length > 1) {
      // every running prompt is stuck for pages: free the newest so the oldest can finish
      this.preempt(this.running[this.running.length - 1], plan);
      this.planPrefill(plan);
    }
    const now = performance.now();
    for (const r of [...plan.decode, ...plan.prefill.map((p) => p.request)]) r.times.firstScheduled ??= now;
    return plan;
  }

  /**
   * Throws when a running request and its KvSequence disagree: outside a
   * step, the sequence holds exactly the request's computed tokens minus
   * those a press evicted.
   */
  checkInvariants(): void {
    for (const r of this.running) {
      const slots = this.kv.has(r.id) ? this.kv.numTokens(r.id) : 0;
      const offset = this.kv.has(r.id) ? this.kv.positionOffset(r.id) : 0;
      if (slots + offset !== r.numComputedTokens) {
        throw new Error(`Scheduler invariant: ${r.id} has ${r.numComputedTokens} computed tokens but its KV holds ${slots} slots + ${offset} evicted`);
      }
    }
    for (const r of this.waiting) {
      if (this.kv.has(r.id)) throw new Error(`Scheduler invariant: waiting request ${r.id} holds pages`);
      if (r.swapped !== this.kv.isSwapped(r.id)) throw new Error(`Scheduler invariant: ${r.id} swapped=${r.swapped} but the KV manager ${this.kv.isSwapped(r.id) ? 'holds' : 'has no'} its copy`);
    }
    this.kv.checkInvariants();
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
      const end = r.prefillEnd;
      const remaining = end - r.numComputedTokens;
      const sampling = end === r.numTokens; // a recomputed request whose compression is pending stops at its prompt's end without sampling
      const window = Math.min(r.finalChunkMin, c.maxPrefillChunk);
      let count = Math.min(remaining, budget, c.maxPrefillChunk);
      if (sampling && count === remaining && sampled >= c.maxSampledRows) count = window > 0 ? 0 : count - 1; // no sampling room: stop short
      // a press scores with the queries of the prompt's last `window` tokens: keep them in one chunk
      if (count < remaining && remaining - count < window) count = remaining - window;
      if (count <= 0 || !this.kv.allocateSlots(r.id, count)) return false;
      const reaches = count === remaining;
      const p: PrefillChunk = { request: r, start: r.numComputedTokens, count, samples: reaches && sampling, captureWindow: reaches ? Math.min(window, count) : 0 };
      plan.prefill.push(p);
      budget -= count;
      if (p.samples) sampled++;
      return true;
    };
    for (const r of this.running) {
      if (budget <= 0) return;
      if (r.stage === 'prefill' && !plan.prefill.some((p) => p.request === r)) chunk(r);
    }
    /** Admits a swapped-out request as it was, and plans its next step; false when its pages do not fit now. */
    const resume = (r: Request): boolean => {
      if (plan.preempted.includes(r)) return false; // swapped out by this very plan: its pages are not saved yet
      if (this.kv.numFreePages < this.kv.pagesFor(r.numTokens) + c.admissionReservePages && this.running.length > 0) return false;
      const state = this.kv.swapIn(r.id);
      if (state === 'no-pages') return false;
      r.swapped = false;
      if (state === 'pending') { // its pages have not reached the CPU tier yet: recompute instead
        this.kv.release(r.id);
        this.resetComputed(r);
        this.swapCounts.fallbacks++;
        return true;
      }
      this.swapCounts.in++;
      this.waiting.shift();
      this.running.push(r);
      if (r.stage === 'prefill') chunk(r);
      else if (r.stage === 'compress' && plan.compress.length < c.maxCompressBatch) plan.compress.push(r);
      else if (r.stage === 'decode' && budget > 0 && sampled < c.maxSampledRows && this.kv.allocateSlots(r.id, 1)) {
        plan.decode.push(r);
        budget--;
        sampled++;
      }
      return true;
    };
    while (this.waiting.length > 0 && this.running.length < c.maxRunning && budget > 0) {
      const r = this.waiting[0];
      if (r.swapped) {
        if (!resume(r)) return;
        continue;
      }
      this.attachPrefix(r);
      if (r.numComputedTokens < r.featurelessEnd) { // an image not encoded, no longer covered by cached KV
        this.detachPrefix(r);
        this.wantFeatures.add(r);
        return;
      }
      const held = this.kv.has(r.id) ? this.kv.blockTable(r.id).length : 0;
      const pagesNeeded = this.peakPages(r) - held + c.admissionReservePages;
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
    if (!this.kv.prefixCacheEnabled || this.kv.has(r.id) || r.numComputedTokens > 0) return;
    if (r.compressionPending && r.compression!.prefix) return this.adoptCompressed(r);
    if (!r.prefixCacheable) return;
    // at least the last token is computed: its step samples the next one
    r.prefixHitTokens = this.kv.getComputedPages(r.id, r, r.numTokens - 1);
    r.prefixCpuSlots = this.kv.lastHit.cpuSlots;
    const end = tailAfter(r.tailEnds, r.prefixHitTokens, this.kv.pageSize, r.numTokens - 1);
    if (end !== undefined && this.kv.adoptTail(r.id, r, end)) {
      r.prefixCpuSlots += end - r.prefixHitTokens;
      r.prefixHitTokens = end;
      r.tailsSaved = Math.max(r.tailsSaved, r.tailEnds.indexOf(end) + 1);
    }
    r.numComputedTokens = r.prefixHitTokens;
  }

  /** A request with a cache prefix starts on its compressed pages when they are cached: as if its press had run. */
  private adoptCompressed(r: Request): void {
    const { end, key } = r.compression!.prefix!;
    const keep = this.keptSlots(r);
    if (keep <= 0 || !this.kv.adoptCompressed(r.id, key, end, keep)) return;
    r.numComputedTokens = end;
    r.prefixHitTokens = end;
    r.prefixCpuSlots = this.kv.lastHit.cpuSlots;
    r.compressed = true;
    r.evictedTokens = end - keep;
  }

  /** Slots a cache prefix keeps: what the compress stage's press leaves, rounded down to whole pages. */
  private keptSlots(r: Request): number {
    return keptPrefixSlots(r.compression!.prefix!.end, r.compression!.ratio, this.kv.pageSize);
  }

  /** The full pages of the plan's cacheable requests join the prefix cache. */
  private cachePages(plan: StepPlan): void {
    if (!this.kv.prefixCacheEnabled) return;
    for (const r of [...plan.decode, ...plan.prefill.map((p) => p.request)]) {
      if (!r.prefixCacheable || r.finished || !this.kv.has(r.id)) continue;
      this.kv.cacheFullPages(r.id, r, r.numComputedTokens);
      while (r.tailsSaved < r.tailEnds.length && r.numComputedTokens >= r.tailEnds[r.tailsSaved]) this.kv.saveTail(r.id, r, r.tailEnds[r.tailsSaved++]);
    }
  }

  /** Undoes attachPrefix when the request could not be admitted after all. */
  private detachPrefix(r: Request): void {
    if (r.prefixHitTokens === 0) return;
    this.kv.release(r.id);
    this.resetComputed(r);
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
    if (this.offloads(r) && this.kv.swapOut(r.id, r.numComputedTokens - this.kv.positionOffset(r.id))) {
      r.swapped = true; // its state stays: it resumes where it was
      this.swapCounts.out++;
    } else {
      this.kv.release(r.id);
      this.resetComputed(r);
    }
    r.numPreemptions++;
    this.preemptions++;
    plan.preempted.push(r);
    plan.decode = plan.decode.filter((x) => x !== r);
    plan.compress = plan.compress.filter((x) => x !== r);
    plan.prefill = plan.prefill.filter((x) => x.request !== r);
    // back to the queue in arrival order, ahead of newer arrivals
    const at = this.waiting.findIndex((w) => w.times.arrival > r.times.arrival);
    this.waiting.splice(at < 0 ? this.waiting.length : at, 0, r);
  }

  /**
   * A rolling window's pages that no later token can see go back to the
   * pool: while the oldest page after the sinks ends before the window of
   * the request's next query (position numComputedTokens), drop it.
   */
  private slideWindow(r: Request): void {
    if (!this.kv.has(r.id)) return;
    const P = this.kv.pageSize;
    const sinkPages = Math.ceil(r.window!.sinks / P);
    const firstVisible = r.numComputedTokens - r.window!.recent + 1;
    for (let seq = this.kv.sequence(r.id); seq.pages.length > sinkPages + 1; seq = this.kv.sequence(r.id)) {
      const lastPosition = sinkPages * P + seq.positionOffset + P - 1; // of the oldest page after the sinks
      if (lastPosition >= firstVisible) return;
      this.kv.dropPage(r.id, sinkPages);
    }
  }

  /** The most pages `r` holds at once: all its tokens', or a rolling window's sinks + recent + one chunk. */
  private peakPages(r: Request): number {
    const all = this.kv.pagesFor(r.numTokens);
    if (!r.window) return all;
    const P = this.kv.pageSize;
    return Math.min(all, Math.ceil(r.window.sinks / P) + Math.ceil((r.window.recent + this.config.maxPrefillChunk) / P) + 1);
  }

  /** Whether a preempted request should swap out rather than be recomputed. */
  private offloads(r: Request): boolean {
    if (this.preemptionMode === 'recompute' || !this.kv.has(r.id) || r.numComputedTokens === 0) return false;
    if (this.preemptionMode === 'offload' || !this.costs) return this.preemptionMode === 'offload';
    const bytes = this.kv.swapBytes(r.numComputedTokens - this.kv.positionOffset(r.id));
    return 2 * this.costs.moveMs(bytes) < this.costs.recomputeMs(r.numComputedTokens);
  }

  /** The tokens stay; the KV is recomputed later (a pending press runs again on the same prompt). */
  private resetComputed(r: Request): void {
    r.numComputedTokens = 0;
    r.compressed = false;
    r.prefixHitTokens = 0;
    r.prefixCpuSlots = 0;
    r.evictedTokens = 0;
  }

  private find(id: string): Request | null {
    return this.running.find((r) => r.id === id) ?? this.waiting.find((r) => r.id === id) ?? null;
  }

  private remove(id: string): Request | null {
    for (const list of [this.running, this.waiting]) {
      const i = list.findIndex((r) => r.id === id);
      if (i >= 0) return list.splice(i, 1)[0];
    }
    return null;
  }
}
