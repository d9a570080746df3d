/**
 * Batch scaling and step overhead (issue 17, part 4): decode steps at batch
 * 1, 2, 4, 8, 16 on the engine's step path (Scheduler → StepExecutor →
 * LlamaModel, bench/engine-rig.ts) for the real stories260K and a
 * SmolLM2-135M-shaped model (synthetic weights), each batch against batch 1
 * in the same run. Per step: wall time, aggregate tokens/s, the forward's GPU
 * time (timestamp queries on the same step) and what the rest is made of:
 * the forward's host phases (StepOptions.phases: upload, record, encode +
 * submit, then the wait until the sampled ids are read back, beyond the GPU's time),
 * the executor's own work and the scheduler's schedule + update.
 *
 * options: --models stories260K,smollm2-135m  --dtype f32|f16  --steps 6
 */
import type { Gpu } from '../../src/gpu/context.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import type { WeightDtype } from '../../src/gpu/kernels/matmul.ts';
import type { CpuTensor } from '../../src/model/weights-cpu.ts';
import type { StepPhases } from '../../src/model/llama.ts';
import { GpuTimer } from '../../src/gpu/timestamps.ts';
import { loadModel } from '../../src/model/loader.ts';
import { resolveSource } from '../../src/model/source.ts';
import { PRESETS, syntheticWeights } from '../synthetic-model.ts';
import { makeRig } from '../engine-rig.ts';
import { percentile } from '../projection/simulate.ts';
import type { BenchResult, PlotSpec } from '../types.ts';

const BATCHES = [1, 2, 4, 8, 16];
/** Also measured on the per-step encoding path (LlamaModel reuseEncoding: false), the baseline of part 4's overhead cut. */
const BASELINE_BATCHES = [1, 16];
const PROMPT = 16;

interface Row {
  model: string;
  batch: number;
  /** 'reused': the engine's path; 'per step': a uniform buffer and bind groups created every step plus a second GPU wait (the baseline). */
  encoding: 'reused' | 'per step';
  wallMs: number;
  tokPerS: number;
  /** Medians over the timed steps; GPU from timestamp queries on the same steps. */
  gpuMs: number | null;
  schedulerMs: number;
  phases: StepPhases;
  /** The forward's wait from submit to the sampled ids in hand, less its GPU time. */
  waitBeyondGpu: number | null;
  /** execute minus the forward step's phases: building the step's input, the compress stage's check. */
  executorMs: number;
  overheadPct: number | null;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const names = (opts.models ?? 'stories260K,smollm2-135m').split(',');
  const dtype: WeightDtype = opts.dtype === 'f16' ? 'f16' : 'f32';
  const steps = Number(opts.steps ?? 6);
  if (!(Number.isInteger(steps) && steps >= 2)) throw new Error(`--steps must be an integer ≥ 2, got ${opts.steps}`);
  const rows: Row[] = [];
  for (const name of names) {
    const { config, weights } = await modelOf(name);
    const runs = [...BATCHES.map((batch) => ({ batch, reuse: true })), ...BASELINE_BATCHES.map((batch) => ({ batch, reuse: false }))];
    for (const { batch, reuse } of runs) {
      const r = await measure(gpu, name, config, weights, dtype, batch, steps, reuse);
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

async function measure(gpu: Gpu, name: string, config: ModelConfig, weights: Map<string, CpuTensor>, dtype: WeightDtype, batch: number, steps: number, reuseEncoding: boolean): Promise<Row> {
  const rig = makeRig(gpu, config, batch, PROMPT, { weights, dtype, maxNew: steps + 8, reuseEncoding });
  const timer = GpuTimer.create(gpu);
  const wall: number[] = [], sched: number[] = [], exec: number[] = [], gpus: number[] = [], runs: StepPhases[] = [];
  try {
    let shape = await rig.step();
    while (shape.prefill.length) shape = await rig.step();
    await rig.step(); // the first decode step at this batch compiles its pipelines
    for (let i = 0; i < steps; i++) {
      // timestamps and phases of the same step, so wait − GPU is per step (SwiftShader's step times vary ±20 %)
      const phases: StepPhases = { upload: 0, record: 0, encode: 0, wait: 0 };
      rig.executor.profile = timer ? { phases, timer } : { phases };
      const t0 = performance.now();
      await rig.step();
      wall.push(performance.now() - t0);
      sched.push(rig.lastMs.schedule + rig.lastMs.update);
      exec.push(rig.lastMs.execute);
      runs.push(phases);
      if (timer) gpus.push(await timer.read());
    }
  } finally {
    rig.destroy();
    timer?.destroy();
  }
  const med = (xs: number[]) => percentile(xs, 50);
  const phase = (k: keyof StepPhases) => med(runs.map((r) => r[k]));
  const hostSum = (r: StepPhases) => r.upload + r.record + r.encode + r.wait;
  const wallMs = med(wall);
  return {
    model: name, batch, encoding: reuseEncoding ? 'reused' : 'per step', wallMs, tokPerS: (1000 * batch) / wallMs, schedulerMs: med(sched),
    gpuMs: timer ? med(gpus) : null,
    phases: { upload: phase('upload'), record: phase('record'), encode: phase('encode'), wait: phase('wait') },
    waitBeyondGpu: timer ? med(runs.map((r, i) => r.wait - gpus[i])) : null,
    executorMs: med(runs.map((r, i) => exec[i] - hostSum(r))),
    overheadPct: timer ? med(wall.map((w, i) => (100 * (w - gpus[i])) / w)) : null,
  };
}

/** The parts of a step's wall time beyond the kernels', ms. */
function overheads(r: Row): Record<string, number | null> {
  const p = r.phases;
  return {
    upload: p.upload, record: p.record, 'encode + submit': p.encode,
    'GPU wait beyond kernels': r.waitBeyondGpu,
    executor: r.executorMs, scheduler: r.schedulerMs,
  };
}

function report(rows: Row[], dtype: WeightDtype): BenchResult {
  const models = [...new Set(rows.map((r) => r.model))];
  const reused = (m: string) => rows.filter((r) => r.model === m && r.encoding === 'reused');
  const find = (m: string, batch: number, encoding: Row['encoding']) => rows.find((r) => r.model === m && r.batch === batch && r.encoding === encoding);
  const f = (x: number | null) => (x === null ? '–' : Number(x.toFixed(2)));
  const parts = Object.keys(overheads(rows[0]));
  const xOf = (r: Row) => (r.encoding === 'reused' ? String(r.batch) : `${r.batch} (per step)`);
  const plots: PlotSpec[] = [
    { title: `Aggregate decode tokens/s vs batch (${dtype} weights)`, kind: 'line', xLabel: 'batch (decode rows per step)', yLabel: 'tokens / s', logY: true, series: models.map((m) => ({ name: m, points: reused(m).map((r) => ({ x: r.batch, y: r.tokPerS })) })) },
    ...models.map((m): PlotSpec => {
      const mine = rows.filter((r) => r.model === m);
      return { title: `Where a step's time goes: ${m}`, kind: 'bar', xLabel: 'batch', yLabel: 'ms per step', series: [
        { name: 'GPU (timestamps)', points: mine.map((r) => ({ x: xOf(r), y: r.gpuMs ?? 0 })) },
        ...parts.map((k) => ({ name: k, points: mine.map((r) => ({ x: xOf(r), y: Math.max(0, overheads(r)[k] ?? 0) })) })),
      ] };
    }),
  ];
  const cuts = models.flatMap((m) => BASELINE_BATCHES.map((b) => {
    const [now, before] = [find(m, b, 'reused'), find(m, b, 'per step')];
    if (!now || !before) return null;
    const host = (r: Row) => r.phases.encode + (r.waitBeyondGpu ?? 0);
    return `${m} batch ${b}: encode + submit ${f(before.phases.encode)} → ${f(now.phases.encode)} ms, GPU wait beyond kernels ${f(before.waitBeyondGpu)} → ${f(now.waitBeyondGpu)} ms (together ${f(host(before) - host(now))} ms less per step); wall ${f(before.wallMs)} → ${f(now.wallMs)} ms`;
  })).filter((x) => x !== null);
  return {
    name: 'batch',
    data: { dtype, prompt: PROMPT, rows },
    table: {
      headers: ['model', 'batch', 'encoding', 'ms/step (wall)', 'tok/s (aggregate)', '× batch 1', 'GPU ms', ...parts.map((k) => `${k} ms`), 'overhead (wall − GPU) %'],
      rows: rows.map((r) => [r.model, String(r.batch), r.encoding, f(r.wallMs), f(r.tokPerS), f(r.tokPerS / find(r.model, 1, 'reused')!.tokPerS), f(r.gpuMs), ...parts.map((k) => f(overheads(r)[k])), r.overheadPct === null ? '–' : `${r.overheadPct.toFixed(0)} %`]),
    },
    plots,
    notes: [
      `decode steps on the engine's path (Scheduler → StepExecutor → LlamaModel), ${PROMPT}-token prompts, greedy; median of the timed steps after a compile step; ${dtype} weights, f16 KV`,
      `every figure is a median over the same timed steps (wall includes the forward's timestamp writes): GPU ms from timestamp queries on the forward's passes; its host phases: upload = writing the step's ids, positions and tables; record = the wrappers recording ~12 dispatches per layer; encode + submit = uniforms, bind groups, passes, queue.submit; GPU wait beyond kernels = the time from the submit until the sampled ids are read back (validation, the kernels, the map) less the kernels' time. executor = execute minus those phases (building the step's input, the compress stage's check); scheduler = schedule() + update()`,
      "encoding 'reused' is the engine's path (one uniform buffer and its bind groups kept across steps, the map requested with the submit, so validation and the GPU wait overlap); 'per step' creates both every step and waits for the GPU, then maps, as before issue 17's cut — same outputs (bench/engine-rig.node.test.ts)",
      ...cuts.map((c) => `the cut, same run: ${c}`),
      "the baseline in the same run is batch 1 of the same model (× batch 1) and, for the overhead cut, the 'per step' rows",
    ],
  };
}
