/**
 * Batch scaling and step overhead (issue 17, part 4): decode steps at batch
 * 1, 2, 4, 8, 16 on the engine's step path (Scheduler → StepExecutor →
 * LlamaModel, bench/engine-rig.ts) for the real stories260K and a
 * SmolLM2-135M-shaped model (synthetic weights), each batch against batch 1
 * in the same run. Per step: wall time, aggregate tokens/s, the GPU time of
 * the same batch's forward (timestamp queries, a step recorded alone), and
 * what the rest is made of — the scheduler's schedule + update, and
 * execute's time beyond the GPU's (recording and encoding the ~12 dispatches
 * per layer with their bind groups, the submit, the wait for the GPU and the
 * readback of the sampled ids).
 *
 * options: --models stories260K,smollm2-135m  --dtype f32|f16  --steps 6
 */
import type { Gpu } from '../../src/gpu/context.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import type { WeightDtype } from '../../src/gpu/kernels/matmul.ts';
import type { CpuTensor } from '../../src/model/weights-cpu.ts';
import type { LlamaModel } from '../../src/model/llama.ts';
import { GpuTimer } from '../../src/gpu/timestamps.ts';
import { KvPool } from '../../src/kv/kv-pool.ts';
import { BlockPool } from '../../src/kv/block-pool.ts';
import { KVCacheManager } from '../../src/kv/kv-cache-manager.ts';
import { loadModel } from '../../src/model/loader.ts';
import { resolveSource } from '../../src/model/source.ts';
import { PRESETS, syntheticWeights } from '../synthetic-model.ts';
import { makeRig } from '../engine-rig.ts';
import { percentile } from '../projection/simulate.ts';
import type { BenchResult, PlotSpec } from '../types.ts';

const BATCHES = [1, 2, 4, 8, 16];
const PROMPT = 16;

interface Row {
  model: string;
  batch: number;
  wallMs: number;
  tokPerS: number;
  gpuMs: number | null;
  schedulerMs: number;
  executeMs: number;
  /** execute − GPU: encoding, submit, waits and readback beyond the kernels' own time. */
  hostMs: number | null;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const names = (opts.models ?? 'stories260K,smollm2-135m').split(',');
  const dtype: WeightDtype = opts.dtype === 'f16' ? 'f16' : 'f32';
  const steps = Number(opts.steps ?? 6);
  if (!(Number.isInteger(steps) && steps >= 2)) throw new Error(`--steps must be an integer ≥ 2, got ${opts.steps}`);
  const rows: Row[] = [];
  for (const name of names) {
    const { config, weights } = await modelOf(name);
    for (const batch of BATCHES) {
      const r = await measure(gpu, name, config, weights, dtype, batch, steps);
      rows.push(r);
      log(`${name} batch ${batch}: ${r.wallMs.toFixed(1)} ms/step, ${r.tokPerS.toFixed(1)} tok/s, GPU ${r.gpuMs?.toFixed(1) ?? '–'} ms, scheduler ${r.schedulerMs.toFixed(2)} ms`);
    }
  }
  return report(rows, dtype);
}

async function modelOf(name: string): Promise<{ config: ModelConfig; weights: Map<string, CpuTensor> }> {
  if (PRESETS[name]) return { config: PRESETS[name], weights: syntheticWeights(PRESETS[name]) };
  const m = await loadModel(resolveSource(`/models/${name}`), { weightDtype: 'f32' });
  return { config: m.config, weights: m.weights };
}

async function measure(gpu: Gpu, name: string, config: ModelConfig, weights: Map<string, CpuTensor>, dtype: WeightDtype, batch: number, steps: number): Promise<Row> {
  const rig = makeRig(gpu, config, batch, PROMPT, { weights, dtype, maxNew: steps + 8 });
  const wall: number[] = [], sched: number[] = [], exec: number[] = [];
  let gpuMs: number | null;
  try {
    let shape = await rig.step();
    while (shape.prefill.length) shape = await rig.step();
    await rig.step(); // the first decode step at this batch compiles its pipelines
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await rig.step();
      wall.push(performance.now() - t0);
      sched.push(rig.lastMs.schedule + rig.lastMs.update);
      exec.push(rig.lastMs.execute);
    }
    gpuMs = await gpuStepMs(gpu, rig.model, config, batch, PROMPT + steps);
  } finally {
    rig.destroy();
  }
  const wallMs = percentile(wall, 50), executeMs = percentile(exec, 50);
  return { model: name, batch, wallMs, tokPerS: (1000 * batch) / wallMs, gpuMs, schedulerMs: percentile(sched, 50), executeMs, hostMs: gpuMs === null ? null : executeMs - gpuMs };
}

/** GPU time (timestamps) of one decode step of `batch` rows, each `ctx` tokens into its sequence, recorded alone. */
async function gpuStepMs(gpu: Gpu, model: LlamaModel, c: ModelConfig, batch: number, ctx: number): Promise<number | null> {
  const timer = GpuTimer.create(gpu);
  if (!timer) return null;
  const pageSize = 16;
  const perSeq = Math.ceil(ctx / pageSize);
  const pool = KvPool.create(gpu, { numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, pageSize, dtype: 'f16', numPages: batch * perSeq + 1 });
  const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize);
  try {
    const tables: number[] = [], rowInfo: number[] = [], slots: number[] = [];
    for (let b = 0; b < batch; b++) {
      if (!kv.allocateSlots(b, ctx)) throw new Error('batch: the timing pool is too small');
      rowInfo.push(tables.length, ctx - 1);
      slots.push(...kv.slotsFor(b, ctx - 1, 1));
      tables.push(...kv.blockTable(b));
    }
    const greedy = { params: { temperature: 0, topK: 0, topP: 1, seed: 0 }, step: 0 };
    const input = {
      tokens: Uint32Array.from({ length: batch }, (_, b) => (b + 1) % c.vocabSize), positions: new Uint32Array(batch).fill(ctx - 1),
      slots: Uint32Array.from(slots), rowInfo: Uint32Array.from(rowInfo), blockTables: Uint32Array.from(tables),
      logitRows: Uint32Array.from({ length: batch }, (_, b) => b), sampling: Array.from({ length: batch }, () => greedy),
    };
    const view = { layers: pool.layers, pageSize, dtype: pool.dtype };
    await model.step(input, view);
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      await model.step(input, view, { timer });
      ms.push(await timer.read());
    }
    return Math.min(...ms);
  } finally {
    pool.destroy();
    timer.destroy();
  }
}

function report(rows: Row[], dtype: WeightDtype): BenchResult {
  const models = [...new Set(rows.map((r) => r.model))];
  const base = (m: string) => rows.find((r) => r.model === m && r.batch === 1)!;
  const f = (x: number | null) => (x === null ? '–' : Number(x.toFixed(2)));
  const plots: PlotSpec[] = [
    { title: `Aggregate decode tokens/s vs batch (${dtype} weights)`, kind: 'line', xLabel: 'batch (decode rows per step)', yLabel: 'tokens / s', logY: true, series: models.map((m) => ({ name: m, points: rows.filter((r) => r.model === m).map((r) => ({ x: r.batch, y: r.tokPerS })) })) },
    ...models.map((m): PlotSpec => ({ title: `Where a step's time goes: ${m}`, kind: 'bar', xLabel: 'batch', yLabel: 'ms per step', series: [
      { name: 'GPU (timestamps)', points: rows.filter((r) => r.model === m).map((r) => ({ x: String(r.batch), y: r.gpuMs ?? 0 })) },
      { name: 'execute beyond GPU', points: rows.filter((r) => r.model === m).map((r) => ({ x: String(r.batch), y: r.hostMs ?? 0 })) },
      { name: 'scheduler', points: rows.filter((r) => r.model === m).map((r) => ({ x: String(r.batch), y: r.schedulerMs })) },
    ] })),
  ];
  return {
    name: 'batch',
    data: { dtype, prompt: PROMPT, rows },
    table: {
      headers: ['model', 'batch', 'ms/step (wall)', 'tok/s (aggregate)', '× batch 1', 'GPU ms', 'execute − GPU ms', 'scheduler ms', 'overhead (wall − GPU) %'],
      rows: rows.map((r) => [r.model, r.batch, f(r.wallMs), f(r.tokPerS), f(r.tokPerS / base(r.model).tokPerS), f(r.gpuMs), f(r.hostMs), f(r.schedulerMs), r.gpuMs === null ? '–' : `${((100 * (r.wallMs - r.gpuMs)) / r.wallMs).toFixed(0)} %`]),
    },
    plots,
    notes: [
      `decode steps on the engine's path (Scheduler → StepExecutor → LlamaModel), ${PROMPT}-token prompts, greedy; median of the timed steps after a compile step; ${dtype} weights, f16 KV`,
      'GPU ms: the same batch\'s forward recorded alone with timestamp queries (best of 3); execute − GPU: recording ~12 dispatches per layer and their bind groups, the submit, the wait for the GPU and the readback of the sampled ids; scheduler: schedule() + update()',
      'the baseline in the same run is batch 1 of the same model (× batch 1)',
    ],
  };
}
