/**
 * What one engine runs on, built from a loaded model: the GPU weights, the
 * KV pool and its manager, the tiers, the scheduler and the vision parts.
 * `Engine.load` builds them once, and again after a lost device.
 */
import { type CcmWeights, loadCcmWeights } from '../model/ccm-weights.ts';
import type { Gpu } from '../gpu/context.ts';
import { MATMUL_DTYPES, type MatmulDtype } from '../gpu/kernels/matmul.ts';
import { loadModel, type LoadedModel } from '../model/loader.ts';
import type { ModelSource } from '../model/source.ts';
import { LlamaModel } from '../model/llama.ts';
import { modelFingerprint } from '../model/fingerprint.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { MultimodalProcessor } from '../model/multimodal-processor.ts';
import { VisionEncoder } from '../model/vision-encoder.ts';
import type { KvPool } from '../kv/kv-pool.ts';
import { allocateKvPool, KvPoolOutOfMemoryError } from '../kv/kv-pool-alloc.ts';
import { BlockPool } from '../kv/block-pool.ts';
import { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { KV_FORMAT_VERSION, namespaceId, type KvNamespace } from '../kv/prefix-key.ts';
import { CpuTier } from '../kv/tiers/cpu-tier.ts';
import { PageTransfer } from '../kv/tiers/page-transfer.ts';
import { PersistentTier } from '../kv/tiers/persistent-tier.ts';
import { indexedDbBackend, memoryBackend } from '../kv/tiers/store-backend.ts';
import { StoredExpansions } from '../kv/tiers/stored-expansions.ts';
import { Scheduler, type SchedulerConfig } from '../scheduler/scheduler.ts';
import { MeasuredCosts } from '../scheduler/preemption.ts';
import type { EngineInfo } from '../api/stats.ts';
import type { EngineOptions, PersistOptions } from './options.ts';

/** The GPU-side parts of one engine, built by `Engine.load` (nothing here keeps the CPU weights). */
export interface Parts {
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
  /** Beside it, the prompt expansions of the pictures whose KV it may hold (null without persist or without vision). */
  expansions: StoredExpansions | null;
  costs: MeasuredCosts;
  scheduler: Scheduler;
  vision: { processor: MultimodalProcessor; encoder: VisionEncoder } | null;
  /** The model's learned KV compressor (FastCache's CCM, press 'ccm'), null when it ships none. */
  ccm: CcmWeights | null;
}

/** Reads the model files and builds its parts on `gpu`; the CPU copy of the weights is dropped once they are uploaded. */
export async function loadParts(gpu: Gpu, source: ModelSource, opts: EngineOptions): Promise<Parts> {
  const w = opts.weightDtype ?? 'auto';
  if (w !== 'auto' && !MATMUL_DTYPES.includes(w)) throw new Error(`weightDtype must be 'auto', 'f32', 'f16', 'q8' or 'q4', got ${JSON.stringify(w)}`);
  // q8 / q4 quantize from the file's own precision, read as it is
  const loaded = await loadModel(source, { weightDtype: w === 'f32' || w === 'f16' ? w : 'auto', ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
  const parts = await buildParts(gpu, source, loaded, opts);
  loaded.weights.clear();
  return parts;
}

/** Everything an engine runs on, from a loaded model (which still holds the CPU weights). */
async function buildParts(gpu: Gpu, source: ModelSource, loaded: LoadedModel, opts: EngineOptions): Promise<Parts> {
  const c = loaded.config;
  // 'auto' keeps the file's precision: f16 files stay f16 on the GPU, f32/bf16 become f32
  const weightDtype: MatmulDtype =
    opts.weightDtype !== undefined && opts.weightDtype !== 'auto' ? opts.weightDtype : loaded.weights.get('model.embed_tokens.weight')?.dtype === 'f16' ? 'f16' : 'f32';
  const kvDtype = opts.kvDtype ?? 'f32';
  const pageSize = opts.pageSize ?? 16;
  const fingerprint = await modelFingerprint(c, loaded.weights);
  const pool = await allocateKvPool(gpu, {
    numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, pageSize, dtype: kvDtype,
    ...(opts.kvPages ? { numPages: opts.kvPages } : { capacityBytes: opts.kvCacheBytes ?? 64 * 2 ** 20 }),
  }).catch((e: unknown) => {
    if (!(e instanceof KvPoolOutOfMemoryError)) throw e;
    const hint = e.fitPages > 0 ? `; load with kvCacheBytes: ${e.fitBytes} (or kvPages: ${e.fitPages}) or less, leaving room for the weights` : '';
    throw new Error(`${e.message}${hint}`);
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
    const expansions = stored && loaded.vision ? await openExpansions(opts.persist!, namespace) : null;
    const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize, prefix ? namespace : null, tier ? { tier, pageBytes: pool.bytesPerPage } : null, stored);
    const transfer = tier ? new PageTransfer(gpu, pool) : null;
    const costs = new MeasuredCosts();
    const scheduler = new Scheduler(kv, sched, { mode: opts.preemption ?? 'auto', costs });
    const vision = loaded.vision ? await loadVision(gpu, source, loaded, opts) : null;
    const ccm = await loadCcmWeights(source, c);
    const info: EngineInfo = {
      modelId: source.id, architecture: c.architecture, parameters: fingerprint.parameters, weightDtype,
      matrixBytesPerParam: model.weights.matrixBytes / model.weights.matrixParams, weightBytes: model.weights.bytes, kvDtype,
      adapter: `${gpu.adapter.vendor} ${gpu.adapter.architecture}`.trim(), kvPages: pool.numPages, kvPageBytes: pool.bytesPerPage, pageSize,
      maxPositions: c.maxPositions, vision: vision !== null, visionBackend: vision?.encoder.backend ?? null, randomWeights: loaded.randomWeights,
      ...(ccm ? { ccmRatio: ccm.ratio } : {}),
    };
    return { gpu, modelId: source.id, config: c, tokenizer: loaded.tokenizer, info, model, pool, kv, transfer, stored, expansions, costs, scheduler, vision, ccm };
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
  const backend = backendOf(o);
  const geometry = { numLayers: pool.numLayers, numKvHeads: pool.numKvHeads, headDim: pool.headDim, pageSize: pool.pageSize, dtype: pool.dtype, bytesPerPage: pool.bytesPerPage };
  try {
    return await PersistentTier.open(backend, ns, geometry, budget, codec);
  } catch (e) {
    // storage the browser will not open (private mode, a blocked or broken database): serve without persistence
    console.warn(`fastcache: stored KV caches are off: ${(e as Error).message}`);
    return null;
  }
}

/** The store `persist` names (checked by openStore); `suffix` names a second one beside it. */
function backendOf(o: PersistOptions, suffix = '') {
  const name = `${o.name ?? 'fastcache-kv'}${suffix}`;
  return (o.store ?? 'indexeddb') === 'memory' ? memoryBackend(name) : indexedDbBackend(name);
}

/** The stored expansions beside the persistent tier; null (serving on, decoding images again) where the store will not open. */
async function openExpansions(o: PersistOptions, ns: KvNamespace): Promise<StoredExpansions | null> {
  try {
    return await StoredExpansions.open(backendOf(o, '-images'), namespaceId(ns));
  } catch (e) {
    console.warn(`fastcache: stored image expansions are off: ${(e as Error).message}`);
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
