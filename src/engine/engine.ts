import type { Gpu } from '../gpu/context.ts';
import type { WeightDtype } from '../gpu/kernels/matmul.ts';
import type { SamplingParams } from '../gpu/kernels/sample.ts';
import { loadModel, type LoadedModel } from '../model/loader.ts';
import { resolveSource, type ModelSource } from '../model/source.ts';
import { LlamaModel, type KvCacheView } from '../model/llama.ts';
import { KvPool } from '../kv/kv-pool.ts';
import { BlockPool } from '../kv/block-pool.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { IncrementalDetokenizer } from './detokenizer.ts';
import { runSequence } from './sequence-runner.ts';
import type { ChatMessage, GenerateOptions, GenerationChunk, GenerationResult, LoadProgress } from './types.ts';

export interface EngineOptions {
  weightDtype?: WeightDtype | 'auto';
  kvDtype?: 'f32' | 'f16';
  /** KV pool size in bytes (default 64 MiB) or pages. */
  kvCacheBytes?: number;
  kvPages?: number;
  pageSize?: number;
  /** Tokens per prefill chunk (default 64). */
  prefillChunk?: number;
  onProgress?: (p: LoadProgress) => void;
}

/**
 * One model on one GPU with its paged KV cache: load it, then generate.
 * (Single request at a time; the batching scheduler builds on the same
 * model step and KV manager.)
 */
export class Engine {
  private constructor(
    readonly gpu: Gpu,
    readonly loaded: LoadedModel,
    readonly model: LlamaModel,
    readonly pool: KvPool,
    readonly kv: KVCacheManager,
    private readonly prefillChunk: number,
  ) {}

  static async load(gpu: Gpu, ref: string | ModelSource, opts: EngineOptions = {}): Promise<Engine> {
    const source = resolveSource(ref);
    const loaded = await loadModel(source, {
      weightDtype: opts.weightDtype ?? 'auto',
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    const c = loaded.config;
    // 'auto' keeps the file's precision: f16 files stay f16 on the GPU, f32/bf16 become f32
    const weightDtype: WeightDtype =
      opts.weightDtype === 'f16' || opts.weightDtype === 'f32' ? opts.weightDtype : loaded.weights.get('model.embed_tokens.weight')?.dtype === 'f16' ? 'f16' : 'f32';
    const prefillChunk = opts.prefillChunk ?? 64;
    const pageSize = opts.pageSize ?? 16;
    const pool = KvPool.create(gpu, {
      numLayers: c.numLayers,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      pageSize,
      dtype: opts.kvDtype ?? 'f32',
      ...(opts.kvPages ? { numPages: opts.kvPages } : { capacityBytes: opts.kvCacheBytes ?? 64 * 2 ** 20 }),
    });
    const model = LlamaModel.create(gpu, c, loaded.weights, {
      weightDtype,
      maxRows: prefillChunk,
      maxLogitRows: 16,
      maxBlockTableEntries: Math.max(pool.numPages, Math.ceil(c.maxPositions / pageSize)),
    });
    const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize);
    return new Engine(gpu, loaded, model, pool, kv, prefillChunk);
  }

  get config() {
    return this.loaded.config;
  }

  get tokenizer() {
    return this.loaded.tokenizer;
  }

  /** Token ids of a prompt: text gets the tokenizer's special tokens (BOS), messages the chat template. */
  encode(input: string | ChatMessage[] | number[]): number[] {
    if (Array.isArray(input) && input.every((x) => typeof x === 'number')) return input as number[];
    if (typeof input === 'string') return this.tokenizer.encode(input);
    return this.tokenizer.applyChatTemplate(input as ChatMessage[], { addGenerationPrompt: true });
  }

  /** Streams the completion chunk by chunk; the generator's return value is the whole result. */
  async *stream(input: string | ChatMessage[] | number[], opts: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    const promptIds = this.encode(input);
    const sampling: SamplingParams = {
      temperature: opts.sampling?.temperature ?? 0,
      topK: opts.sampling?.topK ?? 0,
      topP: opts.sampling?.topP ?? 1,
      seed: opts.sampling?.seed ?? 0,
    };
    const eos = opts.ignoreEos ? [] : this.tokenizer.eosTokenIds;
    const detok = new IncrementalDetokenizer(this.tokenizer, opts.stop ?? []);
    const view: KvCacheView = { layers: this.pool.layers, pageSize: this.pool.pageSize, dtype: this.pool.dtype };
    const run = runSequence({
      model: this.model,
      kv: this.kv,
      view,
      promptIds,
      maxNewTokens: opts.maxTokens ?? 128,
      sampling,
      prefillChunk: this.prefillChunk,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const tokens: number[] = [];
    let finishReason: GenerationResult['finishReason'] = 'length';
    let timing = { prefillMs: 0, ttftMs: 0, decodeMs: 0 };
    for (;;) {
      const next = await run.next();
      if (next.done) {
        timing = next.value.timing;
        if (next.value.aborted) finishReason = 'abort';
        break;
      }
      const id = next.value;
      if (eos.includes(id)) {
        finishReason = 'stop';
        await run.return(undefined as never);
        break;
      }
      tokens.push(id);
      const { delta, stop } = detok.push(id);
      if (delta) yield { token: id, text: delta };
      else yield { token: id, text: '' };
      if (stop !== null) {
        finishReason = 'stop';
        await run.return(undefined as never);
        break;
      }
    }
    const rest = detok.flush();
    if (rest) yield { token: -1, text: rest };
    return {
      text: detok.fullText,
      tokens,
      promptTokens: promptIds.length,
      finishReason,
      timing: { ...timing, tokensPerSecond: tokens.length > 1 ? ((tokens.length - 1) * 1000) / timing.decodeMs : 0 },
    };
  }

  /** Runs to completion; `onToken` sees each chunk as it arrives. */
  async generate(input: string | ChatMessage[] | number[], opts: GenerateOptions & { onToken?: (c: GenerationChunk) => void } = {}): Promise<GenerationResult> {
    const it = this.stream(input, opts);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      opts.onToken?.(r.value);
    }
  }

  destroy(): void {
    this.model.destroy();
    this.pool.destroy();
  }
}
