import type { Gpu } from '../gpu/context.ts';
import type { WeightDtype } from '../gpu/kernels/matmul.ts';
import { loadModel, type LoadedModel } from '../model/loader.ts';
import { resolveSource, type ModelSource } from '../model/source.ts';
import { LlamaModel } from '../model/llama.ts';
import { modelFingerprint } from '../model/fingerprint.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { MultimodalProcessor } from '../model/multimodal-processor.ts';
import { VisionEncoder } from '../model/vision-encoder.ts';
import { KvPool } from '../kv/kv-pool.ts';
import { BlockPool } from '../kv/block-pool.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { KV_FORMAT_VERSION, type KvNamespace } from '../kv/prefix-key.ts';
import { CpuTier } from '../kv/tiers/cpu-tier.ts';
import { PageTransfer } from '../kv/tiers/page-transfer.ts';
import { PersistentTier } from '../kv/tiers/persistent-tier.ts';
import { indexedDbBackend, memoryBackend } from '../kv/tiers/store-backend.ts';
import { promptSource, restorePrefix } from './stored-prefix.ts';
import type { EngineCache } from '../api/cache.ts';
import { Scheduler, type SchedulerConfig } from '../scheduler/scheduler.ts';
import { MeasuredCosts } from '../scheduler/preemption.ts';
import { isEmpty, type StepPlan } from '../scheduler/step-plan.ts';
import { StepCounters } from '../scheduler/metrics.ts';
import type { Request } from '../scheduler/request.ts';
import type { ChatEngine } from '../api/chat-engine.ts';
import type { EngineInfo, EngineStats, RequestMetrics } from '../api/stats.ts';
import type { AsyncQueue } from './async-queue.ts';
import { ChatCompletions } from './chat-completions.ts';
import { PressCompressStage } from './compress-stage.ts';
import { StepExecutor } from './step-executor.ts';
import { EngineInput, isPrepared, type CachedPrefixRef, type PreparedPrompt, type PromptInput } from './input.ts';
import { EngineOutput } from './output.ts';
import { ImageFeatureCache } from './image-features.ts';
import { DeferredImages } from './deferred-images.ts';
import { GpuTurns } from './gpu-turns.ts';
import type { EngineOptions, PersistOptions } from './options.ts';
import type { ChatMessage, EngineEvent, GenerateOptions, GenerationChunk, GenerationResult } from './types.ts';

export type { EngineOptions, EngineLoadOptions } from './options.ts';
export type { PreparedPrompt, PromptInput } from './input.ts';

/** The GPU-side parts of one engine, built by `Engine.load` (nothing here keeps the CPU weights). */
interface Parts {
  gpu: Gpu;
  modelId: string;
  config: ModelConfig;
  tokenizer: Tokenizer;
  info: EngineInfo;
  model: LlamaModel;
  pool: KvPool;
  kv: KVCacheManager;
  /** Moves pages between the pool and the CPU tier (null without one). */
  transfer: PageTransfer | null;
  /** The persistent tier below the CPU tier (null without `persist`). */
  stored: PersistentTier | null;
  costs: MeasuredCosts;
  scheduler: Scheduler;
  vision: { processor: MultimodalProcessor; encoder: VisionEncoder } | null;
}

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
  readonly tokenizer: Tokenizer;
  private readonly counters = new StepCounters();
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private readonly turns = new GpuTurns();
  private readonly imageCache: ImageFeatureCache;
  private readonly presses: PressCompressStage;
  private readonly executor: StepExecutor;
  private readonly input: EngineInput;
  private readonly output: EngineOutput;
  private looping: Promise<void> | null = null;
  private restoredTokens = 0;
  private readonly deferred: DeferredImages;
  readonly cache: EngineCache;

  private constructor(
    private readonly p: Parts,
    opts: EngineOptions,
  ) {
    ({ modelId: this.modelId, config: this.config, tokenizer: this.tokenizer } = p);
    this.imageCache = new ImageFeatureCache(p.gpu, opts.imageCacheBytes ?? 32 * 2 ** 20);
    this.deferred = new DeferredImages(p.scheduler, this.imageCache, (r, e) => {
      this.output.fail(r, e);
      this.released(r);
    });
    this.presses = new PressCompressStage(p.gpu, p.config, p.pool, p.kv);
    this.executor = new StepExecutor(p.model, p.kv, { layers: p.pool.layers, pageSize: p.pool.pageSize, dtype: p.pool.dtype }, this.presses, p.transfer);
    const vision = p.vision;
    this.input = new EngineInput({
      modelId: p.modelId, config: p.config, tokenizer: p.tokenizer, kv: p.kv,
      maxPrefillChunk: p.scheduler.config.maxPrefillChunk,
      pressNeedsQueries: (press) => this.presses.needsQueries(press),
      images: vision ? { processor: vision.processor, features: this.imageCache, encode: (img) => this.turns.run(() => vision.encoder.encode(img)) } : null,
      cachedTokens: (prompt, compressed) => this.cachedTokens(prompt, compressed),
      defaultCompression: opts.compression ?? null,
      defaultWindow: opts.window ?? null,
      defaultCachePrefix: opts.cachePrefix ?? null,
      windowMaxPositions: p.model.sizes.maxPositions,
    });
    this.output = new EngineOutput(p.tokenizer, {
      stop: (r) => p.scheduler.finish(r, 'stop'),
      closed: (r, metrics) => this.closed(r, metrics),
    });
    this.chat = { completions: new ChatCompletions(this) };
    this.cache = {
      list: async () => this.p.stored?.list() ?? [],
      clear: async () => {
        const n = this.p.stored?.list().length ?? 0;
        await this.p.stored?.clear();
        return n;
      },
      usage: async () => this.cacheUsage(),
    };
  }

  static async load(gpu: Gpu, ref: string | ModelSource, opts: EngineOptions = {}): Promise<Engine> {
    const source = resolveSource(ref);
    const loaded = await loadModel(source, { weightDtype: opts.weightDtype ?? 'auto', ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    const parts = await buildParts(gpu, source, loaded, opts);
    loaded.weights.clear(); // on the GPU now: the engine keeps no CPU copy
    return new Engine(parts, opts);
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
    const prompt = await this.input.prepare(input, opts);
    if (!this.p.stored) return prompt;
    const restored = await restorePrefix(this.p.kv, this.p.stored, prompt, this.input.cachePrefixOf(prompt, opts));
    this.restoredTokens += restored;
    return { ...prompt, restoredTokens: (prompt.restoredTokens ?? 0) + restored };
  }

  /** Leading prompt tokens whose KV some tier holds (stored pages staged first): an image inside them needs no encoder run. */
  private async cachedTokens(prompt: PreparedPrompt, compressed: CachedPrefixRef | null): Promise<number> {
    const kv = this.p.kv;
    if (this.p.stored) {
      const restored = await restorePrefix(kv, this.p.stored, prompt, compressed);
      this.restoredTokens += restored;
      prompt.restoredTokens = (prompt.restoredTokens ?? 0) + restored;
    }
    const plain = kv.cachedPrefixTokens(promptSource(prompt), prompt.ids.length - 1);
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
    const prompt = isPrepared(input) ? input : { ids: this.encode(input), images: [] };
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
      ...this.tierStats(),
      clients: 1,
    };
  }

  private tierStats(): Pick<EngineStats, 'tiers'> {
    const cpu = this.p.kv.tierStats();
    if (!cpu || !this.p.transfer) return {};
    const { stored, swapOuts: _o, swapIns: _i, swappedSequences, reservedBytes: _r, ...rest } = cpu;
    const sw = this.p.scheduler.swapStats;
    return {
      tiers: {
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
  }

  on(listener: (e: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Aborts what is running, waits for the step in flight, then frees the GPU memory. */
  async destroy(): Promise<void> {
    for (const id of this.output.ids) this.cancel(id);
    await this.looping;
    await this.flush();
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
    const sched = this.p.scheduler;
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
        const outcome = await this.turns.run(() => this.executor.execute(plan));
        this.observeCosts(plan, performance.now() - t0);
        const result = sched.update(plan, outcome);
        this.record(plan, outcome.sampled.length);
        this.output.deliver(result);
      }
    } catch (e) {
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

/** Everything an engine runs on, from a loaded model (which still holds the CPU weights). */
async function buildParts(gpu: Gpu, source: ModelSource, loaded: LoadedModel, opts: EngineOptions): Promise<Parts> {
  const c = loaded.config;
  // 'auto' keeps the file's precision: f16 files stay f16 on the GPU, f32/bf16 become f32
  const weightDtype: WeightDtype =
    opts.weightDtype === 'f16' || opts.weightDtype === 'f32' ? opts.weightDtype : loaded.weights.get('model.embed_tokens.weight')?.dtype === 'f16' ? 'f16' : 'f32';
  const kvDtype = opts.kvDtype ?? 'f32';
  const pageSize = opts.pageSize ?? 16;
  const fingerprint = await modelFingerprint(c, loaded.weights);
  const pool = KvPool.create(gpu, {
    numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, pageSize, dtype: kvDtype,
    ...(opts.kvPages ? { numPages: opts.kvPages } : { capacityBytes: opts.kvCacheBytes ?? 64 * 2 ** 20 }),
  });
  const prefillChunk = opts.prefillChunk ?? opts.scheduler?.maxPrefillChunk ?? 64;
  const sched: Partial<SchedulerConfig> = { maxBatchTokens: Math.max(64, prefillChunk), maxPrefillChunk: prefillChunk, ...opts.scheduler };
  let model: LlamaModel | null = null;
  try {
    model = LlamaModel.create(gpu, c, loaded.weights, {
      weightDtype, maxRows: sched.maxBatchTokens!, maxLogitRows: sched.maxSampledRows ?? 16,
      // every running sequence's table can appear in one step
      maxBlockTableEntries: pool.numPages + Math.ceil(c.maxPositions / pageSize) * (sched.maxRunning ?? 16),
      // a rolling window may run past the model's context: the RoPE table covers windowMaxPositions
      maxPositions: windowMaxPositions(c.maxPositions, opts),
    });
    const namespace = { modelId: source.id, modelHash: fingerprint.hash, kvDtype, pageSize, formatVersion: KV_FORMAT_VERSION };
    const prefix = opts.prefixCache !== false;
    const cpu = new CpuTier(opts.cpuCacheBytes ?? 128 * 2 ** 20); // checks the option even when unused
    const tier = prefix && cpu.budgetBytes > 0 ? cpu : null; // the tier holds prefix pages: nothing to hold without keys
    const stored = opts.persist ? await openStore(opts.persist, namespace, pool, { prefix, cpu: tier !== null }) : null;
    const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize, prefix ? namespace : null, tier ? { tier, pageBytes: pool.bytesPerPage } : null, stored);
    const transfer = tier ? new PageTransfer(gpu, pool) : null;
    const costs = new MeasuredCosts();
    const scheduler = new Scheduler(kv, sched, { mode: opts.preemption ?? 'auto', costs });
    const vision = loaded.vision ? await loadVision(gpu, source, loaded, opts) : null;
    const info: EngineInfo = {
      modelId: source.id, architecture: c.architecture, parameters: fingerprint.parameters, weightDtype, kvDtype,
      adapter: `${gpu.adapter.vendor} ${gpu.adapter.architecture}`.trim(), kvPages: pool.numPages, kvPageBytes: pool.bytesPerPage, pageSize,
      maxPositions: c.maxPositions, vision: vision !== null, visionBackend: vision?.encoder.backend ?? null, randomWeights: loaded.randomWeights,
    };
    return { gpu, modelId: source.id, config: c, tokenizer: loaded.tokenizer, info, model, pool, kv, transfer, stored, costs, scheduler, vision };
  } catch (e) {
    model?.destroy(); // a failed load leaves no GPU memory behind
    pool.destroy();
    throw e;
  }
}

/** The persistent tier `persist` asks for, opened on this namespace and pool geometry. */
async function openStore(o: PersistOptions, ns: KvNamespace, pool: KvPool, has: { prefix: boolean; cpu: boolean }): Promise<PersistentTier | null> {
  if (typeof o !== 'object' || o === null) throw new TypeError(`persist must be an object like { store: 'indexeddb', budgetBytes }, got ${JSON.stringify(o)}`);
  const store = o.store ?? 'indexeddb';
  if (store !== 'indexeddb' && store !== 'memory') throw new RangeError(`persist.store must be 'indexeddb' or 'memory', got ${JSON.stringify(o.store)}`);
  if (!has.prefix || !has.cpu) throw new RangeError('persist needs the prefix cache and the CPU tier (prefixCache true, cpuCacheBytes > 0): stored pages are prefix pages, staged in the CPU tier');
  const name = o.name ?? 'fastcache-kv';
  if (typeof name !== 'string' || !name) throw new TypeError(`persist.name must be a non-empty string, got ${JSON.stringify(o.name)}`);
  const budget = o.budgetBytes ?? 256 * 2 ** 20;
  if (typeof budget !== 'number' || !Number.isInteger(budget) || budget <= 0) throw new RangeError(`persist.budgetBytes must be a positive integer number of bytes, got ${JSON.stringify(budget)}`);
  const codec = o.codec ?? 'pool';
  if (codec !== 'pool' && codec !== 'int8') throw new RangeError(`persist.codec must be 'pool' or 'int8', got ${JSON.stringify(o.codec)}`);
  const backend = store === 'memory' ? memoryBackend(name) : indexedDbBackend(name);
  const geometry = { numLayers: pool.numLayers, numKvHeads: pool.numKvHeads, headDim: pool.headDim, pageSize: pool.pageSize, dtype: pool.dtype, bytesPerPage: pool.bytesPerPage };
  try {
    return await PersistentTier.open(backend, ns, geometry, budget, codec);
  } catch (e) {
    // storage the browser will not open (private mode, a blocked or broken database): serve without persistence
    console.warn(`fastcache: stored KV caches are off: ${(e as Error).message}`);
    return null;
  }
}

/** Positions a windowed request may reach: as asked, else 4 × the context when the engine has a default window, else the context. */
function windowMaxPositions(context: number, opts: EngineOptions): number {
  const m = opts.windowMaxPositions ?? (opts.window ? 4 * context : context);
  if (!Number.isInteger(m) || m < context) throw new RangeError(`windowMaxPositions must be an integer ≥ the model's context (${context}), got ${String(m)}`);
  return m;
}

async function loadVision(gpu: Gpu, source: ModelSource, loaded: LoadedModel, opts: EngineOptions): Promise<NonNullable<Parts['vision']>> {
  const processor = await MultimodalProcessor.load(source, loaded.tokenizer, loaded.vision!);
  const encoder = await VisionEncoder.load(gpu, source, loaded.vision!, loaded.config, loaded.weights, { ...opts.vision, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
  return { processor, encoder };
}
