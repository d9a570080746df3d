import type { Gpu } from '../gpu/context.ts';
import { resolveSource, type ModelSource } from '../model/source.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { promptSource, restorePrefix } from './stored-prefix.ts';
import type { EngineCache } from '../api/cache.ts';
import { isEmpty, type StepPlan } from '../scheduler/step-plan.ts';
import { StepCounters } from '../scheduler/metrics.ts';
import type { Request } from '../scheduler/request.ts';
import type { ChatEngine } from '../api/chat-engine.ts';
import type { EngineInfo, EngineStats, RequestMetrics } from '../api/stats.ts';
import type { AsyncQueue } from './async-queue.ts';
import { ChatCompletions } from './chat-completions.ts';
import { CcmPress } from '../kv/presses/ccm.ts';
import { PressCompressStage } from './compress-stage.ts';
import { StepExecutor } from './step-executor.ts';
import { checkGenerateOptions } from './option-checks.ts';
import { EngineInput, isPrepared, type CachedPrefixRef, type PreparedPrompt, type PromptInput } from './input.ts';
import { EngineOutput } from './output.ts';
import { ImageFeatureCache } from './image-features.ts';
import { DeferredImages } from './deferred-images.ts';
import { GpuTurns } from './gpu-turns.ts';
import { loadParts, type Parts } from './engine-parts.ts';
import { DeviceHealth } from './device-health.ts';
import type { EngineOptions } from './options.ts';
import type { ChatMessage, EngineEvent, GenerateOptions, GenerationChunk, GenerationResult } from './types.ts';

export type { EngineOptions, EngineLoadOptions } from './options.ts';
export type { PreparedPrompt, PromptInput } from './input.ts';

/**
 * One model on one GPU with its paged KV cache and a continuous-batching
 * scheduler. Requests from any number of callers are served together; one
 * loop runs steps while there is work:
 *
 *   input (EngineInput: validate, tokenize, images) → Scheduler.add
 *   loop:  plan = schedule() → StepExecutor.execute(plan) → outcome
 *          → Scheduler.update(plan, outcome) → EngineOutput.deliver (detokenize, stop strings, finish)
 *
 * Its parts stay inside: callers see `chat.completions.create` (OpenAI) and
 * `stream`/`generate` (transformers.js), `abort`, `info`, `stats`.
 */
export class Engine implements ChatEngine {
  readonly chat: { completions: ChatCompletions };
  readonly modelId: string;
  readonly config: ModelConfig;
  private readonly counters = new StepCounters();
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private readonly health = new DeviceHealth();
  // Everything below is built on one device (assemble) and built again after it is lost.
  private p!: Parts;
  private turns!: GpuTurns;
  private imageCache!: ImageFeatureCache;
  private presses!: PressCompressStage;
  private executor!: StepExecutor;
  private input!: EngineInput;
  private output!: EngineOutput;
  private deferred!: DeferredImages;
  private looping: Promise<void> | null = null;
  private restoredTokens = 0;
  private destroyed = false;
  /** The parts a prompt with images was prepared on (its features live there). */
  private readonly preparedOn = new WeakMap<PreparedPrompt, Parts>();
  private readonly tornDown = new WeakSet<Parts>();
  readonly cache: EngineCache;

  private constructor(
    private readonly source: ModelSource,
    p: Parts,
    private readonly opts: EngineOptions,
  ) {
    ({ modelId: this.modelId, config: this.config } = p);
    this.chat = { completions: new ChatCompletions(this) };
    this.cache = {
      list: async () => this.p.stored?.list() ?? [],
      clear: async () => {
        const n = this.p.stored?.list().length ?? 0;
        await this.p.stored?.clear();
        await this.p.expansions?.clear();
        return n;
      },
      usage: async () => this.cacheUsage(),
    };
    this.assemble(p);
  }

  static async load(gpu: Gpu, ref: string | ModelSource, opts: EngineOptions = {}): Promise<Engine> {
    const source = resolveSource(ref, opts.hubEndpoint ? { hubEndpoint: opts.hubEndpoint } : {});
    return new Engine(source, await loadParts(gpu, source, opts), opts);
  }

  /** The device the engine runs on now (another one after a lost device). */
  get gpu(): Gpu {
    return this.p.gpu;
  }

  get tokenizer(): Tokenizer {
    return this.p.tokenizer;
  }

  /** Wires the per-device stages around `p`, and watches its device. */
  private assemble(p: Parts): void {
    const opts = this.opts;
    this.p = p;
    this.turns = new GpuTurns(); // a turn left hanging on a lost device must not hold the new one
    this.imageCache = new ImageFeatureCache(p.gpu, opts.imageCacheBytes ?? 32 * 2 ** 20);
    this.deferred = new DeferredImages(p.scheduler, this.imageCache, (r, e) => {
      this.output.fail(r, e);
      this.released(r);
    });
    const ccm = p.ccm;
    this.presses = new PressCompressStage(p.gpu, p.config, p.pool, p.kv, ccm ? { ccm: () => new CcmPress(p.gpu, ccm.layers, ccm.factor) } : {});
    this.executor = new StepExecutor(p.model, p.kv, { layers: p.pool.layers, pageSize: p.pool.pageSize, dtype: p.pool.dtype }, this.presses, p.transfer);
    const vision = p.vision;
    const turns = this.turns, imageCache = this.imageCache, presses = this.presses;
    this.input = new EngineInput({
      modelId: p.modelId, config: p.config, tokenizer: p.tokenizer, kv: p.kv,
      maxPrefillChunk: p.scheduler.config.maxPrefillChunk,
      pressNeedsQueries: (press) => presses.needsQueries(press),
      checkPress: (press, ratio, region, runs) => presses.check(press, ratio, region, runs),
      images: vision ? { processor: vision.processor, features: imageCache, encode: (img) => turns.run(() => vision.encoder.encode(img)), expansions: p.expansions } : null,
      cachedTokens: (prompt, compressed, tails) => this.cachedTokens(prompt, compressed, tails),
      defaultCompression: opts.compression ?? null,
      defaultWindow: opts.window ?? null,
      defaultCachePrefix: opts.cachePrefix ?? null,
      windowMaxPositions: p.model.sizes.maxPositions,
    });
    this.output = new EngineOutput(p.tokenizer, {
      stop: (r) => p.scheduler.finish(r, 'stop'),
      closed: (r, metrics) => this.closed(r, metrics),
    });
    void p.gpu.lost.then(() => this.deviceLost(p));
  }

  // ---------------------------------------------------------------- a lost device

  /**
   * The device under `p` is gone (a driver reset, a GPU process crash, or
   * `device.destroy()`): every request in flight ends now with finish reason
   * 'error', and the next request (or `reload()`) rebuilds the engine on a new device.
   */
  private deviceLost(p: Parts): void {
    if (p !== this.p || this.destroyed) return;
    const message = this.health.lost(p.gpu.lostReason ?? 'unknown', this.output.ids.length);
    this.emit({ kind: 'device-lost', message });
    for (const id of this.output.ids) {
      const r = p.scheduler.abort(id, 'error');
      if (r) this.output.close(r, message);
    }
  }

  /**
   * Builds the engine again from its model source: on a new device when the
   * old one was lost, else on the same one. Requests in flight are aborted;
   * requests sent meanwhile wait for it. The next request after a lost device
   * does this by itself.
   */
  async reload(): Promise<void> {
    for (const id of this.output.ids) this.cancel(id);
    await this.looping;
    await this.health.rebuild(() => this.rebuild());
  }

  private async rebuild(): Promise<number> {
    const t0 = performance.now();
    const old = this.p;
    if (old.gpu.lostReason === null) await this.flush().catch(() => {});
    this.teardown();
    const gpu = old.gpu.lostReason === null ? old.gpu : await reacquire(old.gpu);
    this.assemble(await loadParts(gpu, this.source, this.opts));
    const ms = performance.now() - t0;
    this.emit({ kind: 'device-recovered', ms });
    return ms;
  }

  /** Waits for a rebuild under way, and starts one after a lost device; throws when it fails. */
  private ready(): Promise<void> {
    return this.health.needsRebuild ? this.health.rebuild(() => this.rebuild()) : this.health.settled();
  }

  // ---------------------------------------------------------------- requests

  /** Token ids of a text prompt (BOS added) or of text-only chat messages (chat template). */
  encode(input: string | ChatMessage[] | number[]): number[] {
    return this.input.encode(input);
  }

  /**
   * Any prompt → ids plus pinned image features (see EngineInput.prepare);
   * with `persist`, the stored pages of its prefix are staged for the scheduler too.
   */
  async prepare(input: PromptInput, opts: GenerateOptions = {}): Promise<PreparedPrompt> {
    checkGenerateOptions(opts); // before any image is fetched or decoded (submit checks again: a prompt may come prepared)
    await this.ready();
    const p = this.p;
    let prompt = await this.input.prepare(input, opts);
    if (p.stored) {
      const restored = await restorePrefix(p.kv, p.stored, prompt, this.input.cachePrefixOf(prompt, opts), this.input.tailEndsOf(prompt, opts));
      this.restoredTokens += restored;
      prompt = { ...prompt, restoredTokens: (prompt.restoredTokens ?? 0) + restored };
    }
    if (prompt.images.length) this.preparedOn.set(prompt, p);
    return prompt;
  }

  /** Leading prompt tokens whose KV some tier holds (stored pages staged first): an image inside them needs no encoder run. */
  private async cachedTokens(prompt: PreparedPrompt, compressed: CachedPrefixRef | null, tails: readonly number[]): Promise<number> {
    const kv = this.p.kv;
    if (this.p.stored) {
      const restored = await restorePrefix(kv, this.p.stored, prompt, compressed, tails);
      this.restoredTokens += restored;
      prompt.restoredTokens = (prompt.restoredTokens ?? 0) + restored;
    }
    const plain = kv.cachedPrefixTokens(promptSource(prompt), prompt.ids.length - 1, tails);
    return compressed && kv.holdsCompressed(compressed.key, compressed.keep) ? Math.max(plain, compressed.end) : plain;
  }

  /**
   * Enqueues a request and streams its chunks; the generator's return value is
   * the whole result. Breaking out of the loop early aborts the request.
   */
  async *stream(input: PromptInput, opts: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    const { id, queue } = this.submit(await this.prepare(input, opts), opts);
    const onAbort = () => this.cancel(id);
    opts.signal?.addEventListener('abort', onAbort);
    if (opts.signal?.aborted) onAbort(); // aborted while the prompt was being prepared
    let done = false;
    try {
      for (;;) {
        const r = await queue.next();
        if (r.done) {
          done = true;
          return r.value;
        }
        yield r.value;
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      if (!done) this.cancel(id);
    }
  }

  /** Runs to completion; `onToken` sees each chunk as it arrives. */
  async generate(input: PromptInput, opts: GenerateOptions & { onToken?: (c: GenerationChunk) => void } = {}): Promise<GenerationResult> {
    const it = this.stream(input, opts);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      opts.onToken?.(r.value);
    }
  }

  /**
   * Adds a request to the scheduler. Validation errors throw here, before
   * anything is queued; the returned queue yields its chunks.
   */
  submit(input: PromptInput, opts: GenerateOptions = {}): { id: string; queue: AsyncQueue<GenerationChunk, GenerationResult> } {
    const blocked = this.health.blocked;
    if (blocked) throw new Error(blocked);
    const prompt = isPrepared(input) ? input : { ids: this.encode(input), images: [] };
    const on = this.preparedOn.get(prompt);
    if (on && on !== this.p) throw new Error('this prompt was prepared before the engine reloaded its model (its image features are gone): prepare it again');
    let queue: AsyncQueue<GenerationChunk, GenerationResult>;
    let request: Request;
    try {
      request = this.input.request(prompt, opts, this.tokenizer.eosTokenIds);
      queue = this.output.open(request, opts.stop ?? []);
    } catch (e) {
      this.release(prompt);
      throw e;
    }
    this.p.scheduler.add(request);
    this.emit({ kind: 'request-queued', id: request.id, promptTokens: request.promptIds.length });
    void this.loop();
    return { id: request.id, queue };
  }

  /** Unpins the image features of a prompt from `prepare` that will not be submitted. */
  release(prompt: PreparedPrompt): void {
    for (const img of prompt.images) if (img.features) this.imageCache.release(img.key);
  }

  /** Stops a request now: its pages go back to the pool at once; its stream ends with finishReason 'abort'. */
  abort(id: string): Promise<boolean> {
    return Promise.resolve(this.cancel(id));
  }

  /** `abort`, synchronously (the engine's own callers: streams left early, abort signals). */
  cancel(id: string): boolean {
    if (!this.output.has(id)) return false;
    const r = this.p.scheduler.abort(id);
    if (r) this.output.close(r);
    return r !== null;
  }

  // ---------------------------------------------------------------- what it runs, how it does

  info(): Promise<EngineInfo> {
    return Promise.resolve({ ...this.p.info });
  }

  stats(): Promise<EngineStats> {
    return Promise.resolve(this.snapshot());
  }

  /** `stats`, synchronously (in-process callers). */
  snapshot(): EngineStats {
    const c = this.counters;
    const mem = this.p.gpu.memory.snapshot();
    const bp = this.p.kv.pool;
    const vision = this.p.vision;
    return {
      steps: c.steps,
      requestsFinished: c.finished,
      requestsAborted: c.aborted,
      requestsRunning: this.p.scheduler.numRunning,
      requestsWaiting: this.p.scheduler.numWaiting,
      promptTokens: c.prefillTokens,
      generatedTokens: c.generated,
      throughputTokPerS: c.throughput(),
      meanBatch: {
        prefillTokens: c.steps ? c.prefillTokens / c.steps : 0,
        decodeRows: c.steps ? c.decodeRows / c.steps : 0,
        compress: c.steps ? c.compressed / c.steps : 0,
      },
      preemptions: this.p.scheduler.numPreemptions,
      pool: { pagesTotal: bp.numPages, pagesInUse: bp.numUsed, peakPagesInUse: bp.peakUsed, pageSize: this.p.pool.pageSize },
      gpuBytes: mem.bytes,
      gpuPeakBytes: mem.peakBytes,
      compression: { ...this.presses.stats },
      vision: {
        imagesDecoded: vision?.processor.decodes ?? 0,
        encoderCalls: vision?.encoder.calls ?? 0,
        imagesEncoded: this.imageCache.misses,
        featureCacheHits: this.imageCache.hits,
      },
      prefixCache: this.p.kv.prefixStats(),
      device: this.health.stats(),
      ...this.tierStats(),
      clients: 1,
    };
  }

  private tierStats(): Pick<EngineStats, 'tiers'> {
    const cpu = this.p.kv.tierStats();
    if (!cpu || !this.p.transfer) return {};
    const { stored, swapOuts: _o, swapIns: _i, swappedSequences, reservedBytes: _r, ...rest } = cpu;
    const sw = this.p.scheduler.swapStats;
    const prefix = this.p.kv.prefixStats();
    return {
      tiers: {
        gpu: { hits: prefix.hitPages, misses: prefix.missPages },
        cpu: { ...rest, demotedPages: stored },
        transfers: { ...this.p.transfer.stats },
        swaps: { outs: sw.swapOuts, ins: sw.swapIns, fallbacks: sw.fallbacks, swappedNow: swappedSequences },
        ...(this.p.stored ? { stored: { ...this.p.stored.stats(), restoredTokens: this.restoredTokens } } : {}),
      },
    };
  }

  private cacheUsage(): Awaited<ReturnType<EngineCache['usage']>> {
    const s = this.snapshot();
    const pageBytes = this.p.pool.bytesPerPage;
    const cpu = s.tiers?.cpu, stored = s.tiers?.stored;
    return {
      gpu: { pages: s.pool.pagesInUse, cachedPages: s.prefixCache.cachedPages, bytes: (s.pool.pagesInUse + s.prefixCache.cachedPages) * pageBytes },
      cpu: cpu ? { pages: cpu.pages, bytes: cpu.bytes, budgetBytes: cpu.budgetBytes } : null,
      stored: stored ? { entries: stored.entries, bytes: stored.bytes, budgetBytes: stored.budgetBytes, backend: stored.backend } : null,
    };
  }

  /** Restarts the peak and throughput counters (between benchmark phases). */
  resetStats(): void {
    this.counters.resetClock();
    this.p.kv.pool.resetPeak();
    this.p.gpu.memory.resetPeak();
  }

  /** Throws when the scheduler, the KV manager, the pool, the prefix cache and the CPU tier disagree (tests call it between requests). */
  checkInvariants(): void {
    this.p.scheduler.checkInvariants();
  }

  /**
   * Throws unless the engine is idle and consistent (vLLM's assert_scheduler_empty):
   * no request, every GPU page free (reference count 0), nothing swapped out, and checkInvariants().
   */
  checkIdle(): void {
    this.checkInvariants();
    const s = this.snapshot();
    if (s.requestsRunning + s.requestsWaiting > 0) throw new Error(`engine not idle: ${s.requestsRunning} running, ${s.requestsWaiting} waiting`);
    if (s.pool.pagesInUse > 0) throw new Error(`engine idle with ${s.pool.pagesInUse} GPU pages in use (a leak)`);
    if (s.tiers && s.tiers.swaps.swappedNow > 0) throw new Error(`engine idle with ${s.tiers.swaps.swappedNow} sequences still swapped out`);
  }

  /** Resolves when every page on its way to the CPU tier has arrived, and every stored page is written (tests, shutdown). */
  async flush(): Promise<void> {
    await this.executor.flush();
    await this.p.stored?.flush();
    await this.p.expansions?.flush();
  }

  on(listener: (e: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Aborts what is running, waits for the step in flight, then frees the GPU memory. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.health.settled().catch(() => {});
    for (const id of this.output.ids) this.cancel(id);
    await this.looping;
    if (this.p.gpu.lostReason === null) await this.flush();
    this.teardown();
  }

  /** Frees what the current parts hold on the GPU (once: a failed rebuild may come back here). */
  private teardown(): void {
    if (this.tornDown.has(this.p)) return;
    this.tornDown.add(this.p);
    this.presses.dispose();
    this.p.vision?.encoder.destroy();
    this.imageCache.clear();
    this.p.model.destroy();
    this.p.pool.destroy();
  }

  // ---------------------------------------------------------------- the loop

  private loop(): Promise<void> {
    this.looping ??= this.runLoop().finally(() => (this.looping = null));
    return this.looping;
  }

  private async runLoop(): Promise<void> {
    const p = this.p, sched = p.scheduler;
    // a step on a lost device may never settle: the loss ends the wait
    const lost = p.gpu.lost.then((info) => Promise.reject(new Error(`the GPU device was lost (${info.message || info.reason})`)));
    lost.catch(() => {});
    try {
      // let the caller that woke us add more requests before the first step
      await Promise.resolve();
      while (sched.hasWork()) {
        const plan = sched.schedule();
        this.deferred.start();
        if (isEmpty(plan)) {
          if (this.deferred.running) {
            await this.deferred.next();
            continue;
          }
          throw new Error(`the scheduler could not place any request: ${sched.debugString()}`);
        }
        this.emit({ kind: 'step-start', decode: plan.decode.map((r) => r.id), prefill: plan.prefill.map((c) => c.request.id), compress: plan.compress.map((r) => r.id) });
        const t0 = performance.now();
        const outcome = await Promise.race([this.turns.run(() => this.executor.execute(plan)), lost]);
        this.observeCosts(plan, performance.now() - t0);
        const result = sched.update(plan, outcome);
        this.record(plan, outcome.sampled.length);
        this.output.deliver(result);
      }
    } catch (e) {
      // A lost device makes the step fail (mapAsync's AbortError) before `device.lost`
      // settles: give it a moment, so that deviceLost ends these requests as 'error'.
      if (p === this.p) await Promise.race([p.gpu.lost, new Promise((r) => setTimeout(r, 200))]);
      if (p !== this.p) return; // rebuilt meanwhile: these requests are gone with their parts
      for (const r of this.output.failAll(e)) {
        sched.abort(r.id);
        this.released(r);
      }
    }
  }

  /** What 'auto' preemption weighs: this adapter's time per step row and per byte moved. */
  private observeCosts(plan: StepPlan, ms: number): void {
    this.p.costs.observeStep(plan.decode.length + plan.prefill.reduce((n, c) => n + c.count, 0), ms);
    const t = this.p.transfer?.stats;
    if (t) this.p.costs.observeTransfer(t.bytesDown, t.msDown);
  }

  private record(plan: StepPlan, sampled: number): void {
    this.counters.record(plan, sampled);
    const moved = this.executor.lastMoves;
    this.emit({
      kind: 'step', decode: plan.decode.length, prefillTokens: plan.prefill.reduce((n, c) => n + c.count, 0), compress: plan.compress.length,
      preempted: plan.preempted.length, pagesInUse: this.p.kv.pool.numUsed, pagesDown: moved.down, pagesUp: moved.up,
    });
  }

  /** A request's stream ended: count it, release its window buffers and image features. */
  private closed(r: Request, metrics: RequestMetrics): void {
    if (r.finishReason === 'abort') this.counters.aborted++;
    else this.counters.finished++;
    this.released(r);
    this.emit({ kind: 'request-finished', id: r.id, finishReason: r.finishReason ?? 'abort', metrics });
  }

  private released(r: Request): void {
    this.presses.drop(r.id);
    for (const img of r.images) if (img.features) this.imageCache.release(img.key);
  }



  private emit(e: EngineEvent): void {
    for (const l of this.listeners) l(e);
  }
}

/** A new device in place of a lost one (acquireGpu's options again). */
async function reacquire(lost: Gpu): Promise<Gpu> {
  if (!lost.reacquire) throw new Error('this engine was given a Gpu that cannot be acquired again (not made by acquireGpu): load a new engine on a new device');
  return lost.reacquire();
}
