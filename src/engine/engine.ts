import type { Gpu } from '../gpu/context.ts';
import type { WeightDtype } from '../gpu/kernels/matmul.ts';
import type { SamplingParams } from '../gpu/kernels/sample.ts';
import { loadModel, type LoadedModel } from '../model/loader.ts';
import { resolveSource, type ModelSource } from '../model/source.ts';
import { LlamaModel, type KvCacheView } from '../model/llama.ts';
import { KvPool } from '../kv/kv-pool.ts';
import { BlockPool } from '../kv/block-pool.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { Request } from '../scheduler/request.ts';
import { Scheduler, type SchedulerConfig } from '../scheduler/scheduler.ts';
import { isEmpty, type StepPlan } from '../scheduler/step-plan.ts';
import { StepCounters, requestMetrics, type EngineStats } from '../scheduler/metrics.ts';
import { AsyncQueue } from './async-queue.ts';
import { ChatCompletions } from './chat-completions.ts';
import { PressCompressStage, type CompressStage } from './compress-stage.ts';
import { IncrementalDetokenizer } from './detokenizer.ts';
import { runStep } from './step-runner.ts';
import { validateRequest } from './validate.ts';
import type { ChatMessage, CompressionOptions, EngineEvent, GenerateOptions, GenerationChunk, GenerationResult, LoadProgress } from './types.ts';
import type { CompressionSpec, PromptImage } from '../scheduler/request.ts';
import { MultimodalProcessor, type MultimodalMessage } from '../model/multimodal-processor.ts';
import { VisionEncoder, type VisionEncoderOptions } from '../model/vision-encoder.ts';
import { PrefixCache } from '../kv/prefix-cache.ts';
import { ImageFeatureCache } from './image-features.ts';
import { GpuTurns } from './gpu-turns.ts';

export interface EngineOptions {
  weightDtype?: WeightDtype | 'auto';
  kvDtype?: 'f32' | 'f16';
  /** KV pool size in bytes (default 64 MiB) or pages. */
  kvCacheBytes?: number;
  kvPages?: number;
  pageSize?: number;
  /** Tokens of one prompt per step (default 64). */
  prefillChunk?: number;
  /** Batching policy; see SchedulerConfig. */
  scheduler?: Partial<SchedulerConfig>;
  /** KV compression applied to every request that does not set its own (default none). */
  compression?: CompressionOptions;
  /** Vision encoder: 'auto' (WebGPU on this engine's device where onnxruntime-web can, else wasm), or a backend / file. */
  vision?: Omit<VisionEncoderOptions, 'onProgress'>;
  /** GPU bytes kept for image features of past images (default 32 MiB). */
  imageCacheBytes?: number;
  /** Share KV pages of equal prompt prefixes across requests (default true). */
  prefixCache?: boolean;
  onProgress?: (p: LoadProgress) => void;
}

/** A prompt ready for the scheduler: ids, and the images whose features fill image-token positions (pinned in the feature cache). */
export interface PreparedPrompt {
  ids: number[];
  images: PromptImage[];
}

/** What `stream`, `generate` and `submit` take: text, chat messages (with images for a VLM), token ids, or a prepared prompt. */
export type PromptInput = string | ChatMessage[] | number[] | PreparedPrompt;

/** A request in flight: what the loop needs to stream it to its caller. */
interface Active {
  request: Request;
  logits: Float32Array[] | null;
  detok: IncrementalDetokenizer;
  eos: number[];
  maxPositions: number;
  queue: AsyncQueue<GenerationChunk, GenerationResult>;
}

let requestCounter = 0;

/**
 * One model on one GPU with its paged KV cache and a continuous-batching
 * scheduler. Requests from any number of callers are served together:
 * `stream`/`generate` (transformers.js-style) and `chat.completions.create`
 * (OpenAI-style) both enqueue a request; one loop runs steps while there is
 * work, each step one batched forward over every active sequence.
 */
export class Engine {
  readonly chat: { completions: ChatCompletions };
  readonly scheduler: Scheduler;
  private readonly active = new Map<string, Active>();
  private readonly counters = new StepCounters();
  private readonly view: KvCacheView;
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private looping: Promise<void> | null = null;
  readonly presses: PressCompressStage;
  compressStage: CompressStage;
  private readonly defaultCompression: CompressionOptions | null;
  readonly prefixCache: PrefixCache | null;
  readonly imageCache: ImageFeatureCache;
  private readonly turns = new GpuTurns();

  private constructor(
    readonly gpu: Gpu,
    readonly modelId: string,
    readonly loaded: LoadedModel,
    readonly model: LlamaModel,
    readonly pool: KvPool,
    readonly kv: KVCacheManager,
    schedulerConfig: Partial<SchedulerConfig>,
    compression: CompressionOptions | undefined,
    readonly processor: MultimodalProcessor | null,
    readonly vision: VisionEncoder | null,
    opts: EngineOptions,
  ) {
    this.prefixCache = opts.prefixCache === false ? null : new PrefixCache(kv.pool, kv);
    this.imageCache = new ImageFeatureCache(gpu, opts.imageCacheBytes ?? 32 * 2 ** 20);
    this.scheduler = new Scheduler(kv, schedulerConfig, this.prefixCache);
    this.presses = new PressCompressStage(gpu, loaded.config, pool, kv);
    this.compressStage = this.presses;
    this.defaultCompression = compression ?? null;
    if (compression) this.compressionSpec(compression, 1); // a bad default fails at load, not at the first request
    this.view = { layers: pool.layers, pageSize: pool.pageSize, dtype: pool.dtype };
    this.chat = { completions: new ChatCompletions(this) };
  }

  static async load(gpu: Gpu, ref: string | ModelSource, opts: EngineOptions = {}): Promise<Engine> {
    const source = resolveSource(ref);
    const loaded = await loadModel(source, { weightDtype: opts.weightDtype ?? 'auto', ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    const c = loaded.config;
    // 'auto' keeps the file's precision: f16 files stay f16 on the GPU, f32/bf16 become f32
    const weightDtype: WeightDtype =
      opts.weightDtype === 'f16' || opts.weightDtype === 'f32' ? opts.weightDtype : loaded.weights.get('model.embed_tokens.weight')?.dtype === 'f16' ? 'f16' : 'f32';
    const pageSize = opts.pageSize ?? 16;
    const pool = KvPool.create(gpu, {
      numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, pageSize, dtype: opts.kvDtype ?? 'f32',
      ...(opts.kvPages ? { numPages: opts.kvPages } : { capacityBytes: opts.kvCacheBytes ?? 64 * 2 ** 20 }),
    });
    const prefillChunk = opts.prefillChunk ?? opts.scheduler?.maxPrefillChunk ?? 64;
    const sched: Partial<SchedulerConfig> = { maxBatchTokens: Math.max(64, prefillChunk), maxPrefillChunk: prefillChunk, ...opts.scheduler };
    const maxRows = sched.maxBatchTokens!;
    const maxSampled = sched.maxSampledRows ?? 16;
    const model = LlamaModel.create(gpu, c, loaded.weights, {
      weightDtype, maxRows, maxLogitRows: maxSampled,
      // every running sequence's table can appear in one step
      maxBlockTableEntries: pool.numPages + Math.ceil(c.maxPositions / pageSize) * (sched.maxRunning ?? 16),
    });
    const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize);
    let processor: MultimodalProcessor | null = null;
    let vision: VisionEncoder | null = null;
    if (loaded.vision) {
      processor = await MultimodalProcessor.load(source, loaded.tokenizer, loaded.vision);
      vision = await VisionEncoder.load(gpu, source, loaded.vision, c, loaded.weights, { ...opts.vision, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    }
    return new Engine(gpu, source.id, loaded, model, pool, kv, sched, opts.compression, processor, vision, opts);
  }

  get config() {
    return this.loaded.config;
  }

  get tokenizer() {
    return this.loaded.tokenizer;
  }

  /**
   * Token ids of a text prompt: text gets the tokenizer's special tokens (BOS),
   * messages the chat template. Messages for a vision model go through `prepare`.
   */
  encode(input: string | ChatMessage[] | number[]): number[] {
    if (Array.isArray(input) && input.every((x) => typeof x === 'number')) return input as number[];
    if (typeof input === 'string') return this.tokenizer.encode(input);
    const messages = input as ChatMessage[];
    if (this.processor || messages.some((m) => typeof m.content !== 'string')) {
      throw new TypeError('messages with images (or for a vision model) need prepare(): use stream, generate or chat.completions.create, which call it');
    }
    return this.tokenizer.applyChatTemplate(messages as { role: string; content: string }[], { addGenerationPrompt: true });
  }

  /**
   * Any prompt → ids plus image features: images are decoded and checked,
   * expanded by the model's processor, and encoded by the vision encoder —
   * unless the feature cache already holds them (same image bytes, same model).
   * The features stay pinned until the request submitted with them ends.
   */
  async prepare(input: PromptInput): Promise<PreparedPrompt> {
    if (isPrepared(input)) return input;
    if (typeof input === 'string' || !input.length || typeof input[0] === 'number') return { ids: this.encode(input as string | number[]), images: [] };
    const messages = input as ChatMessage[];
    if (!this.processor || !this.vision) {
      if (messages.some((m) => typeof m.content !== 'string' && m.content.some((p) => p.type !== 'text'))) {
        throw new TypeError(`model ${this.modelId} takes no images (it has no vision encoder); send text only or load a vision model`);
      }
      return { ids: this.encode(messages.map((m) => ({ role: m.role, content: textOf(m.content) }))), images: [] };
    }
    const mm = await this.processor.prepare(messages.map(toMultimodal));
    const images: PromptImage[] = [];
    try {
      for (const img of mm.images) {
        const features = await this.imageCache.acquire(img.key, () => this.turns.run(() => this.vision!.encode(img)));
        images.push({ key: img.key, runs: img.runs, features });
      }
    } catch (e) {
      for (const img of images) this.imageCache.release(img.key);
      throw e;
    }
    return { ids: mm.ids, images };
  }

  /**
   * Enqueues a request and streams its chunks; the generator's return value is
   * the whole result. Breaking out of the loop early aborts the request.
   */
  async *stream(input: PromptInput, opts: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    const { id, queue } = this.submit(await this.prepare(input), opts);
    const onAbort = () => this.abort(id);
    opts.signal?.addEventListener('abort', onAbort);
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
      if (!done) this.abort(id);
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
    try {
      return this.enqueue(prompt, opts);
    } catch (e) {
      for (const img of prompt.images) this.imageCache.release(img.key);
      throw e;
    }
  }

  private enqueue({ ids: promptIds, images }: PreparedPrompt, opts: GenerateOptions): { id: string; queue: AsyncQueue<GenerationChunk, GenerationResult> } {
    const maxNew = opts.maxTokens ?? 128;
    validateRequest(this.config, this.kv, this.view.pageSize, promptIds, maxNew);
    const sampling: SamplingParams = {
      temperature: opts.sampling?.temperature ?? 0, topK: opts.sampling?.topK ?? 0, topP: opts.sampling?.topP ?? 1, seed: opts.sampling?.seed ?? 0,
    };
    const id = opts.requestId ?? `req-${++requestCounter}`;
    if (this.active.has(id)) throw new Error(`a request with id '${id}' is already running; request ids must be unique`);
    const compression = opts.compression ?? this.defaultCompression;
    const request = new Request(id, promptIds, Math.min(maxNew, this.config.maxPositions - promptIds.length), sampling);
    request.images = images;
    if (compression) request.compression = this.compressionSpec(compression, promptIds.length, images);
    if (opts.forceTokens) {
      for (const t of opts.forceTokens) if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) throw new RangeError(`forceTokens: id ${t} is outside the vocabulary`);
      request.forcedTokens = opts.forceTokens;
    }
    request.wantsLogits = opts.returnLogits === true;
    const queue = new AsyncQueue<GenerationChunk, GenerationResult>();
    this.active.set(id, {
      request, queue, maxPositions: this.config.maxPositions, logits: request.wantsLogits ? [] : null,
      detok: new IncrementalDetokenizer(this.tokenizer, opts.stop ?? []),
      eos: opts.ignoreEos ? [] : this.tokenizer.eosTokenIds,
    });
    this.scheduler.add(request);
    this.emit({ kind: 'request-queued', id, promptTokens: promptIds.length });
    void this.loop();
    return { id, queue };
  }

  /** Checks a request's compression options and resolves its observation window. */
  private compressionSpec(o: CompressionOptions, promptTokens: number, images: readonly PromptImage[] = []): CompressionSpec {
    if (!(o.ratio >= 0 && o.ratio < 1)) throw new RangeError(`compression ratio must be in [0, 1), got ${o.ratio}`);
    const needsQueries = this.presses.needsQueries(o.press); // throws for an unknown press, listing the known ones
    const window = needsQueries ? Math.min(o.window ?? 16, promptTokens) : 0;
    if (window > this.scheduler.config.maxPrefillChunk) {
      throw new RangeError(`compression window ${window} exceeds the prefill chunk (${this.scheduler.config.maxPrefillChunk}); use a smaller window`);
    }
    const region = this.compressionRegion(o.region, images);
    return { press: o.press, ratio: o.ratio, window, ...(region ? { region } : {}) };
  }

  /** 'all' → the whole prompt; 'image' → the span of the image tokens (an error without images); a range as given. */
  private compressionRegion(r: CompressionOptions['region'], images: readonly PromptImage[]): CompressionSpec['region'] {
    if (r === undefined || r === 'all') return undefined;
    if (r === 'image') {
      const runs = images.flatMap((i) => i.runs);
      if (!runs.length) throw new RangeError("compression region 'image' needs a prompt with an image");
      return { start: Math.min(...runs.map((x) => x.start)), end: Math.max(...runs.map((x) => x.start + x.count)) };
    }
    if (!(typeof r === 'object' && 0 <= r.start && r.start <= r.end)) {
      throw new RangeError(`compression region ${JSON.stringify(r)} is not 'all', 'image' or a range {start, end} of prompt tokens`);
    }
    return r;
  }

  /** Stops a request now: its pages go back to the pool at once; its stream ends with finishReason 'abort'. */
  abort(id: string): boolean {
    const a = this.active.get(id);
    if (!a) return false;
    this.scheduler.abort(id);
    this.finish(a, 'abort');
    return true;
  }

  stats(): EngineStats {
    const c = this.counters;
    const mem = this.gpu.memory.snapshot();
    const bp = this.kv.pool;
    return {
      steps: c.steps,
      requestsFinished: c.finished,
      requestsAborted: c.aborted,
      requestsRunning: this.scheduler.numRunning,
      requestsWaiting: this.scheduler.numWaiting,
      promptTokens: c.prefillTokens,
      generatedTokens: c.generated,
      throughputTokPerS: c.throughput(),
      meanBatch: {
        prefillTokens: c.steps ? c.prefillTokens / c.steps : 0,
        decodeRows: c.steps ? c.decodeRows / c.steps : 0,
        compress: c.steps ? c.compressed / c.steps : 0,
      },
      preemptions: this.scheduler.numPreemptions,
      pool: { pagesTotal: bp.numPages, pagesInUse: bp.numUsed, peakPagesInUse: bp.peakUsed, pageSize: this.pool.pageSize },
      gpuBytes: mem.bytes,
      gpuPeakBytes: mem.peakBytes,
      compression: { ...this.presses.stats },
      vision: { encoderCalls: this.vision?.calls ?? 0, imagesEncoded: this.imageCache.misses, featureCacheHits: this.imageCache.hits },
      prefixCache: this.prefixCache?.snapshot() ?? { lookups: 0, hitRequests: 0, hitTokens: 0, cachedPages: 0 },
    };
  }

  /** Restarts the peak and throughput counters (between benchmark phases). */
  resetStats(): void {
    this.counters.resetClock();
    this.kv.pool.resetPeak();
    this.gpu.memory.resetPeak();
  }

  on(listener: (e: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Aborts what is running, waits for the step in flight, then frees the GPU memory. */
  async destroy(): Promise<void> {
    for (const id of [...this.active.keys()]) this.abort(id);
    await this.looping;
    this.presses.dispose();
    this.vision?.destroy();
    this.imageCache.clear();
    this.model.destroy();
    this.pool.destroy();
  }

  // ---------------------------------------------------------------- the loop

  private loop(): Promise<void> {
    this.looping ??= this.runLoop().finally(() => (this.looping = null));
    return this.looping;
  }

  private async runLoop(): Promise<void> {
    try {
      // let the caller that woke us add more requests before the first step
      await Promise.resolve();
      while (this.scheduler.hasWork()) {
        const plan = this.scheduler.schedule();
        if (isEmpty(plan)) throw new Error(`the scheduler could not place any request: ${this.scheduler.debugString()}`);
        await this.turns.run(() => this.runPlan(plan));
      }
    } catch (e) {
      for (const a of [...this.active.values()]) {
        this.scheduler.abort(a.request.id);
        this.active.delete(a.request.id);
        a.queue.fail(e);
      }
    }
  }

  private async runPlan(plan: StepPlan): Promise<void> {
    const started = performance.now();
    for (const r of [...plan.decode, ...plan.prefill.map((p) => p.request)]) r.times.firstScheduled ??= started;
    await this.compressStage.run(plan.compress);
    // a request aborted while the compress stage ran has already given its pages back: drop its rows
    plan = { ...plan, decode: plan.decode.filter((r) => !r.finished), prefill: plan.prefill.filter((p) => !p.request.finished) };
    const sampled = await runStep(this.model, this.kv, this.view, plan, (r, rows) => this.compressStage.captureFor(r, rows));
    if (this.prefixCache) {
      for (const r of [...plan.decode, ...plan.prefill.map((p) => p.request)]) {
        if (r.prefixCacheable && !r.finished && this.kv.has(r.id)) this.prefixCache.publish(r, r.numCachedSlots);
      }
    }
    const now = performance.now();
    for (const p of plan.prefill) if (p.samples) p.request.times.prefillDone ??= now;
    this.counters.record(plan, sampled.length);
    this.emit({ kind: 'step', decode: plan.decode.length, prefillTokens: plan.prefill.reduce((n, c) => n + c.count, 0), compress: plan.compress.length, preempted: plan.preempted.length, pagesInUse: this.kv.pool.numUsed });
    for (const { request, token, logits } of sampled) {
      if (logits) this.active.get(request.id)?.logits?.push(logits);
      this.deliver(request, token);
    }
  }

  /** Hands a sampled token to its caller, and ends the request if it is done. */
  private deliver(r: Request, token: number): void {
    const a = this.active.get(r.id);
    if (!a) return; // aborted while its step ran
    if (a.eos.includes(token)) {
      r.outputIds.pop();
      return this.finish(a, 'stop');
    }
    r.times.firstToken ??= performance.now();
    const { delta, stop } = a.detok.push(token);
    a.queue.push({ token, text: delta });
    if (stop !== null) return this.finish(a, 'stop');
    if (r.outputIds.length >= r.maxNewTokens || r.numTokens >= a.maxPositions) this.finish(a, 'length');
  }

  private finish(a: Active, reason: GenerationResult['finishReason']): void {
    const r = a.request;
    if (!this.active.delete(r.id)) return;
    r.finishReason ??= reason;
    r.times.finished = performance.now();
    this.scheduler.finish(r);
    this.compressStage.drop(r.id);
    this.prefixCache?.drop(r.id);
    for (const img of r.images) this.imageCache.release(img.key);
    if (reason === 'abort') this.counters.aborted++;
    else this.counters.finished++;
    const rest = a.detok.flush();
    if (rest) a.queue.push({ token: -1, text: rest });
    const m = requestMetrics(r);
    const tokens = [...r.outputIds];
    a.queue.end({
      id: r.id,
      text: a.detok.fullText,
      tokens,
      promptTokens: r.promptIds.length,
      finishReason: r.finishReason,
      timing: { ...m, tokensPerSecond: m.tpotMs > 0 ? 1000 / m.tpotMs : 0 },
      ...(a.logits ? { logits: a.logits.slice(0, tokens.length) } : {}),
    });
    this.emit({ kind: 'request-finished', id: r.id, finishReason: r.finishReason, metrics: m });
  }

  private emit(e: EngineEvent): void {
    for (const l of this.listeners) l(e);
  }
}

function isPrepared(input: PromptInput): input is PreparedPrompt {
  return typeof input === 'object' && !Array.isArray(input) && input !== null && Array.isArray((input as PreparedPrompt).ids);
}

function textOf(content: ChatMessage['content']): string {
  return typeof content === 'string' ? content : content.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** OpenAI content parts → the processor's: image_url and image parts both become images. */
function toMultimodal(m: ChatMessage): MultimodalMessage {
  if (typeof m.content === 'string') return { role: m.role, content: m.content };
  return {
    role: m.role,
    content: m.content.map((p) => {
      if (p.type === 'text') return { type: 'text' as const, text: p.text };
      if (p.type === 'image_url') return { type: 'image' as const, image: p.image_url.url };
      if (p.type === 'image') return { type: 'image' as const, image: p.image };
      throw new TypeError(`unknown content part type '${(p as { type: string }).type}' (use 'text', 'image_url' or 'image')`);
    }),
  };
}
