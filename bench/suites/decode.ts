/**
 * Decode speed at batch 1 against the memory-bandwidth roofline of the same
 * adapter. A decode step must read every weight once (and the KV cache), so
 * tokens/s can be at most bandwidth / bytes-per-token; the copy kernel gives
 * the bandwidth a WGSL kernel actually reaches here.
 *
 * options: --preset smollm2-135m|llama-20m  --tokens N (decode steps, 16)
 *          --prompt N (prompt tokens, 32)  --dtypes f16,f32,q8,q4  --kv f16|f32
 * (q8 / q4 quantize the layers' matrices; the embedding and LM head stay f16)
 */
import type { Gpu } from '../../src/gpu/context.ts';
import { storageBuffer } from '../../src/gpu/buffers.ts';
import { CommandRecorder } from '../../src/gpu/recorder.ts';
import { GpuTimer, type PassTime } from '../../src/gpu/timestamps.ts';
import { encodeCopy } from '../../src/gpu/kernels/copy.ts';
import { MATMUL_DTYPES, type MatmulDtype } from '../../src/gpu/kernels/matmul.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { KvPool } from '../../src/kv/kv-pool.ts';
import { BlockPool } from '../../src/kv/block-pool.ts';
import { KVCacheManager } from '../../src/kv/kv-cache-manager.ts';
import { StepExecutor } from '../../src/engine/step-executor.ts';
import { PressCompressStage } from '../../src/engine/compress-stage.ts';
import { Request } from '../../src/scheduler/request.ts';
import { Scheduler } from '../../src/scheduler/scheduler.ts';
import { PRESETS, parameterCount, syntheticWeights } from '../synthetic-model.ts';
import type { BenchResult, PlotSpec } from '../types.ts';

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const presetName = opts.preset ?? 'smollm2-135m';
  const config = PRESETS[presetName];
  if (!config) throw new Error(`unknown preset '${presetName}'; known: ${Object.keys(PRESETS).join(', ')}`);
  const steps = Number(opts.tokens ?? 16);
  const promptLen = Number(opts.prompt ?? 32);
  const dtypes = (opts.dtypes ?? 'f16,f32,q8,q4').split(',') as MatmulDtype[];
  const unknown = dtypes.filter((d) => !MATMUL_DTYPES.includes(d));
  if (unknown.length) throw new Error(`--dtypes: unknown weight dtype ${unknown.join(', ')}; known: ${MATMUL_DTYPES.join(', ')}`);
  const kvDtype = opts.kv === 'f32' ? 'f32' : 'f16';

  const bw = await copyBandwidth(gpu, log);
  log(`params: ${(parameterCount(config) / 1e6).toFixed(1)} M (${presetName})`);
  const cpu = syntheticWeights(config);
  const rows: BenchResult['table']['rows'] = [];
  const data: Record<string, unknown> = { preset: presetName, config, parameters: parameterCount(config), bandwidth: bw, steps, promptLen, kvDtype };
  const runs: Record<string, unknown>[] = [];
  for (const dtype of dtypes) {
    const r = await decodeRun(gpu, config, cpu, dtype, kvDtype, promptLen, steps, log);
    const bytesPerToken = r.weightBytesRead + r.kvBytesRead;
    const roofline = (bw.gbps * 1e9) / bytesPerToken;
    runs.push({ dtype, ...r, bytesPerToken, rooflineTokPerS: roofline, efficiency: r.tokPerS / roofline });
    rows.push([`${dtype} weights`, r.tokPerS, r.msPerToken, r.gpuMsPerToken ?? '–', bytesPerToken / 1e6, roofline, `${((100 * r.tokPerS) / roofline).toFixed(1)} %`]);
  }
  data.runs = runs;
  return {
    name: 'decode',
    data,
    table: { headers: ['weights', 'decode tok/s', 'ms/token (wall)', 'GPU ms/token', 'MB read/token', 'roofline tok/s', 'of roofline'], rows },
    plots: [{
      title: `Decode at batch 1, ${presetName} (${(parameterCount(config) / 1e6).toFixed(0)}M), vs bandwidth roofline`,
      kind: 'bar', xLabel: 'weight dtype', yLabel: 'tokens / s',
      series: [
        { name: 'measured', points: runs.map((r) => ({ x: String(r.dtype), y: Number(r.tokPerS) })) },
        { name: 'roofline', points: runs.map((r) => ({ x: String(r.dtype), y: Number(r.rooflineTokPerS) })) },
      ],
    }, ...profilePlot(runs)],
    notes: [
      `copy kernel bandwidth: ${bw.gbps.toFixed(2)} GB/s (${bw.source}; ${(bw.bytes / 2 ** 20).toFixed(0)} MiB read + written per pass)`,
      `roofline = bandwidth / (weight bytes + KV bytes read per token); prompt ${promptLen} tokens, ${steps} decode steps, KV ${kvDtype}`,
      ...runs.flatMap((r) => (r.kernels ? [profileNote(String(r.dtype), r.kernels as KernelTime[])] : [])),
    ],
  };
}

/** One line per weight dtype: each kernel's share of a decode step's GPU time (one pass per kernel). */
function profileNote(dtype: string, kernels: KernelTime[]): string {
  const total = kernels.reduce((s, k) => s + k.ms, 0);
  const parts = kernels.map((k) => `${k.kernel} ${k.ms.toFixed(1)} ms (${((100 * k.ms) / total).toFixed(0)} %, ${k.dispatches}×)`);
  return `GPU time by kernel, ${dtype} weights (one timestamped pass per dispatch, best of 3; ${total.toFixed(1)} ms in all): ${parts.join(' · ')}`;
}

function profilePlot(runs: Record<string, unknown>[]): PlotSpec[] {
  const withProfile = runs.filter((r) => r.kernels);
  if (withProfile.length === 0) return [];
  const top = [...new Set(withProfile.flatMap((r) => (r.kernels as KernelTime[]).slice(0, 6).map((k) => k.kernel)))];
  return [{
    title: 'Decode step GPU time by kernel', kind: 'bar', xLabel: 'kernel (pipeline#entry)', yLabel: 'GPU ms per step',
    series: withProfile.map((r) => ({ name: `${r.dtype} weights`, points: top.map((kernel) => ({ x: kernel, y: (r.kernels as KernelTime[]).find((k) => k.kernel === kernel)?.ms ?? 0 })) })),
  }];
}

export async function copyBandwidth(gpu: Gpu, log: (s: string) => void) {
  const bytes = 256 * 2 ** 20;
  const src = storageBuffer(gpu, 'bench:copy_src', bytes);
  const dst = storageBuffer(gpu, 'bench:copy_dst', bytes);
  const timer = GpuTimer.create(gpu);
  const times: number[] = [];
  const gpuTimes: number[] = [];
  for (let i = 0; i < 6; i++) {
    const rec = new CommandRecorder(gpu, 'copy', timer ?? undefined);
    encodeCopy(rec, { src, dst, words: bytes / 4 });
    const t0 = performance.now();
    await rec.submit();
    const ms = performance.now() - t0;
    const gms = timer ? await timer.read() : null;
    if (i > 0) {
      times.push(ms);
      if (gms) gpuTimes.push(gms);
    }
  }
  gpu.destroyBuffer(src);
  gpu.destroyBuffer(dst);
  timer?.destroy();
  const best = gpuTimes.length ? Math.min(...gpuTimes) : Math.min(...times);
  const gbps = (2 * bytes) / (best / 1e3) / 1e9;
  log(`copy bandwidth ${gbps.toFixed(2)} GB/s`);
  return { gbps, bytes, source: gpuTimes.length ? 'GPU timestamps, best of 5' : 'wall clock, best of 5', wallMs: times, gpuMs: gpuTimes };
}

async function decodeRun(gpu: Gpu, config: typeof PRESETS[string], cpu: ReturnType<typeof syntheticWeights>, dtype: MatmulDtype, kvDtype: 'f16' | 'f32', promptLen: number, steps: number, log: (s: string) => void) {
  const model = LlamaModel.create(gpu, config, cpu, { weightDtype: dtype, maxRows: Math.max(64, promptLen), maxLogitRows: 1 });
  const pageSize = 16;
  const pool = KvPool.create(gpu, { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, pageSize, dtype: kvDtype, numPages: Math.ceil((promptLen + steps + 1) / pageSize) + 1 });
  const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize);
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % config.vocabSize);
  const view = { layers: pool.layers, pageSize, dtype: kvDtype };
  const req = new Request('bench', prompt, { maxNewTokens: steps + 1, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 } });
  // the engine's own path: schedule → execute (one forward) → update
  const sched = new Scheduler(kv, { maxBatchTokens: Math.max(64, promptLen), maxPrefillChunk: Math.max(64, promptLen), admissionReservePages: 0 });
  const executor = new StepExecutor(model, kv, view, new PressCompressStage(gpu, config, pool, kv));
  const step = async () => {
    const plan = sched.schedule();
    sched.update(plan, await executor.execute(plan));
  };
  sched.add(req);
  await step(); // the prompt
  const stamps: number[] = [performance.now()];
  for (let i = 0; i < steps; i++) {
    await step();
    stamps.push(performance.now());
  }
  sched.abort(req.id);
  const stepMs = stamps.slice(1).map((t, i) => t - stamps[i]).sort((a, b) => a - b);
  const msPerToken = stepMs[Math.floor(stepMs.length / 2)];
  // GPU time of one more decode step, measured with timestamps where the adapter has them
  const gpuMsPerToken = await timedDecodeStep(gpu, model, pool, kv, config, prompt.length + steps + 1);
  const kernels = await decodeKernelProfile(gpu, model, pool, kv, config);
  const tokPerS = 1000 / msPerToken;
  log(`${dtype} weights: ${tokPerS.toFixed(2)} tok/s (${msPerToken.toFixed(1)} ms/token)`);
  const wbytes = model.weights.dtype === 'f16' ? 2 : 4; // the embedding's: q8 / q4 keep it f16
  const embedRows = config.vocabSize * config.hiddenSize;
  // every weight is read once per token, except the embedding table (one row) unless it is also the head
  const weightBytesRead = model.weights.bytes - (config.tieWordEmbeddings ? 0 : embedRows * wbytes);
  const ctx = promptLen + steps / 2;
  const kvBytesRead = ctx * config.numLayers * config.numKvHeads * config.headDim * 2 * (kvDtype === 'f16' ? 2 : 4);
  model.destroy();
  pool.destroy();
  return { msPerToken, tokPerS, gpuMsPerToken, kernels, stepMs, weightBytes: model.weights.bytes, weightBytesRead, kvBytesRead };
}

/** GPU time of one more decode step (best of 3), measured with timestamps where the adapter has them. */
export async function timedDecodeStep(gpu: Gpu, model: LlamaModel, pool: KvPool, kv: KVCacheManager, config: typeof PRESETS[string], _len: number): Promise<number | null> {
  const timer = GpuTimer.create(gpu);
  if (!timer) return null;
  const runs = await timedSteps(model, pool, kv, config, timer, 3);
  return runs === null ? null : Math.min(...runs.map((r) => r.reduce((s, p) => s + p.ms, 0)));
}

/** One kernel's share of a decode step: its pipeline name and entry point, dispatches, GPU ms. */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  ms: number;
}

/**
 * Where a decode step's GPU time goes: one timestamped pass per dispatch
 * (GpuTimer perDispatch), summed by kernel (pipeline name and entry point;
 * the constants, e.g. a workgroup size, are folded together). Best of 3
 * steps per kernel. Null without timestamps.
 */
export async function decodeKernelProfile(gpu: Gpu, model: LlamaModel, pool: KvPool, kv: KVCacheManager, config: typeof PRESETS[string]): Promise<KernelTime[] | null> {
  // 2048 passes = 4096 queries, WebGPU's largest query set
  const timer = GpuTimer.create(gpu, 2048, { perDispatch: true });
  if (!timer) return null;
  const runs = await timedSteps(model, pool, kv, config, timer, 3);
  if (runs === null) return null;
  const byKernel = new Map<string, KernelTime>();
  for (const run of runs) {
    const sums = new Map<string, { n: number; ms: number }>();
    for (const p of run) {
      const kernel = p.label.split('|')[0];
      const s = sums.get(kernel) ?? { n: 0, ms: 0 };
      sums.set(kernel, { n: s.n + 1, ms: s.ms + p.ms });
    }
    for (const [kernel, s] of sums) {
      const prev = byKernel.get(kernel);
      if (!prev || s.ms < prev.ms) byKernel.set(kernel, { kernel, dispatches: s.n, ms: s.ms });
    }
  }
  return [...byKernel.values()].sort((a, b) => b.ms - a.ms);
}

/** `times` timed decode steps of one token at position 15, after an untimed warm-up; destroys the timer. */
async function timedSteps(model: LlamaModel, pool: KvPool, kv: KVCacheManager, config: typeof PRESETS[string], timer: GpuTimer, times: number): Promise<PassTime[][] | null> {
  const seq = 1 << 30;
  const n = 16;
  if (!kv.allocateSlots(seq, n)) {
    timer.destroy();
    return null;
  }
  const input = {
    tokens: Uint32Array.from({ length: 1 }, () => 1 % config.vocabSize),
    positions: Uint32Array.of(n - 1),
    slots: kv.slotsFor(seq, n - 1, 1),
    rowInfo: Uint32Array.of(0, n - 1),
    blockTables: Uint32Array.from(kv.blockTable(seq)),
    logitRows: Uint32Array.of(0),
    sampling: [{ params: { temperature: 0, topK: 0, topP: 1, seed: 0 }, step: 0 }],
  };
  const view = { layers: pool.layers, pageSize: pool.pageSize, dtype: pool.dtype };
  try {
    await model.step(input, view);
    const runs: PassTime[][] = [];
    for (let i = 0; i < times; i++) {
      await model.step(input, view, { timer });
      runs.push(await timer.readPasses());
    }
    return runs;
  } finally {
    kv.free(seq);
    timer.destroy();
  }
}
