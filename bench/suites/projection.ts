/**
 * A projection of FastCache's concurrency figures to GPUs we do not have
 * (issue 17, part 5). The engine's real Scheduler runs on a virtual clock
 * (bench/projection/simulate.ts) with a step-time model (step-cost.ts):
 * max(bytes ÷ bandwidth, FLOPs ÷ matmul rate) + a fixed per-step cost.
 *
 *   1. calibrate on this adapter, from micro-benchmarks only: the copy
 *      kernel's bandwidth, the matmul kernel's FLOP/s at 1–64 rows, and from
 *      one decode step of a tiny model the fixed cost (wall − GPU time) and
 *      the per-layer cost (its GPU time beyond bytes and FLOPs, per layer);
 *   2. validate: the real engine path (Scheduler + StepExecutor + LlamaModel)
 *      on two models it was not calibrated on, decode at batch 1–16 and
 *      prefill chunks, measured wall time per step vs predicted → error;
 *   3. project SmolVLM-256M (its real config: SigLIP tower, 13 tiles of 64
 *      image tokens per picture, the 135M decoder) on named GPUs from their
 *      published figures: TTFT p50 and throughput, scheduler vs one at a
 *      time, at 1–8 × μ (μ = 1 / time of one request alone). Labelled as
 *      projections: nothing in part 3 is measured.
 *
 * options: --n 24 (requests per projected run)  --max-tokens 32  --tiles 13
 */
import type { Gpu } from '../../src/gpu/context.ts';
import { storageBuffer } from '../../src/gpu/buffers.ts';
import { CommandRecorder } from '../../src/gpu/recorder.ts';
import { GpuTimer } from '../../src/gpu/timestamps.ts';
import { encodeMatmul } from '../../src/gpu/kernels/matmul.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { KvPool } from '../../src/kv/kv-pool.ts';
import { BlockPool } from '../../src/kv/block-pool.ts';
import { KVCacheManager } from '../../src/kv/kv-cache-manager.ts';
import { PRESETS, syntheticWeights } from '../synthetic-model.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import { copyBandwidth, timedDecodeStep } from './decode.ts';
import { stepMs, visionFlops, type DeviceModel, type ModelShape, type StepShape } from '../projection/step-cost.ts';
import { evenArrivals, percentile, simulate } from '../projection/simulate.ts';
import { makeRig, timed } from '../engine-rig.ts';

/** stories260K's shapes (the real model's config), with synthetic weights: a model whose step is nearly all fixed cost. */
const TINY: ModelConfig = { ...PRESETS['llama-20m'], vocabSize: 512, hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8, numKvHeads: 4, headDim: 8, maxPositions: 512 };
const RATE_ROWS = [1, 4, 16, 64];
const BATCHES = [1, 2, 4, 8, 16];
const RATE_MULTIPLES = [1, 2, 4, 8];

/** Published figures (peak DRAM bandwidth, FP32 non-tensor TFLOPS); efficiencies below are assumptions, stated in the notes. */
const GPUS = [
  { name: 'Intel Iris Xe (96 EU, laptop iGPU)', gbps: 68.3, tflops: 2.2, source: 'LPDDR4x-4266 dual channel; 96 EU × 16 FLOP/clk × 1.4 GHz' },
  { name: 'Apple M2 (10-core GPU)', gbps: 100, tflops: 3.6, source: "Apple's M2 figures" },
  { name: 'NVIDIA RTX 3060 (12 GB)', gbps: 360, tflops: 12.7, source: "NVIDIA's RTX 3060 specifications" },
  { name: 'NVIDIA RTX 4090', gbps: 1008, tflops: 82.6, source: "NVIDIA's RTX 4090 specifications" },
];
/** Fractions of the published peaks a WGSL kernel is assumed to reach (no tensor cores, no subgroup matrices). */
const BANDWIDTH_EFFICIENCY = 0.7;
const COMPUTE_EFFICIENCY = 0.35;
/** Per-step cost assumed on those GPUs: Chromium's submit + map round trip and our encoding (ms). */
const GPU_FIXED_MS = 2;
/** Per decoder layer on those GPUs: about a dozen dependent dispatches of ~5 µs each (assumed). */
const GPU_PER_LAYER_MS = 0.06;

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const n = int(opts.n ?? '24', 'n');
  const maxTokens = int(opts['max-tokens'] ?? '32', 'max-tokens');
  const tiles = int(opts.tiles ?? '13', 'tiles');

  // 1. calibration
  const bw = await copyBandwidth(gpu, log);
  const rate = await matmulRates(gpu);
  log(`matmul rate: ${rate.map((r) => `${r.rows} rows ${(r.flops / 1e9).toFixed(2)} GFLOP/s`).join(', ')}`);
  const bare: DeviceModel = { name: 'bare', bandwidth: bw.gbps * 1e9, rate, fixedMs: 0, perLayerMs: 0, source: '', projected: false };
  const tiny = await tinyStep(gpu);
  const kernelsMs = stepMs(bare, shapeOf('tiny', TINY, 4, 2), { decodeContexts: [17], prefill: [], images: 0 });
  const fixedMs = tiny.wallMs - tiny.gpuMs;
  const perLayerMs = Math.max(0, tiny.gpuMs - kernelsMs) / TINY.numLayers;
  log(`tiny decode step: wall ${tiny.wallMs.toFixed(2)} ms, GPU ${tiny.gpuMs.toFixed(2)} ms → fixed ${fixedMs.toFixed(2)} ms, ${perLayerMs.toFixed(3)} ms per layer`);
  const here: DeviceModel = { ...bare, name: `this adapter (${gpu.adapter.vendor} ${gpu.adapter.architecture})`, fixedMs, perLayerMs, source: 'measured: copy kernel, matmul kernel, one tiny-model step' };

  // 2. validation on the engine's own step path
  const validation: { model: string; kind: string; measuredMs: number; predictedMs: number; errorPct: number }[] = [];
  for (const [name, config] of [['llama-20m (synthetic)', PRESETS['llama-20m']], ['stories260K shapes (synthetic)', TINY]] as const) {
    const shape = shapeOf(name, config, 4, 2);
    for (const m of await measureSteps(gpu, config)) {
      const predictedMs = stepMs(here, shape, m.shape);
      validation.push({ model: name, kind: m.kind, measuredMs: m.ms, predictedMs, errorPct: (100 * (predictedMs - m.ms)) / m.ms });
      log(`validate ${name} ${m.kind}: measured ${m.ms.toFixed(1)} ms, predicted ${predictedMs.toFixed(1)} ms`);
    }
  }
  const meanAbsErr = validation.reduce((a, v) => a + Math.abs(v.errorPct), 0) / validation.length;

  // 3. projection
  const vlm = smolVlmShape(tiles);
  const imageTokens = tiles * 64;
  const devices: DeviceModel[] = [
    here,
    ...GPUS.map((g): DeviceModel => ({ name: g.name, bandwidth: g.gbps * 1e9 * BANDWIDTH_EFFICIENCY, rate: [{ rows: 1, flops: g.tflops * 1e12 * COMPUTE_EFFICIENCY }], fixedMs: GPU_FIXED_MS, perLayerMs: GPU_PER_LAYER_MS, source: g.source, projected: true })),
  ];
  const projections = devices.map((d) => project(d, vlm, { n, maxTokens, imageTokens }));
  for (const p of projections) log(`${p.device}: μ = ${p.mu.toFixed(3)} req/s; at 4 μ scheduler TTFT p50 ${p.runs.find((r) => r.multiple === 4)!.ttftRatio.toFixed(3)} × baseline`);
  return report({ bw: bw.gbps, here, validation, meanAbsErr, projections, n, maxTokens, tiles, imageTokens });
}

// ---------------------------------------------------------------- calibration

async function matmulRates(gpu: Gpu): Promise<{ rows: number; flops: number }[]> {
  const [n, k] = [1536, 576]; // SmolLM2's MLP shape
  const w = storageBuffer(gpu, 'proj:w', n * k * 4);
  const x = storageBuffer(gpu, 'proj:x', 64 * k * 4);
  const out = storageBuffer(gpu, 'proj:out', 64 * n * 4);
  const timer = GpuTimer.create(gpu);
  const rates: { rows: number; flops: number }[] = [];
  try {
    for (const m of RATE_ROWS) {
      const ms: number[] = [];
      for (let i = 0; i < 4; i++) {
        const rec = new CommandRecorder(gpu, 'proj:mm', timer ?? undefined);
        for (let rep = 0; rep < 8; rep++) encodeMatmul(rec, { x, w, dtype: 'f32', out, m, n, k });
        const t0 = performance.now();
        await rec.submit();
        const wall = performance.now() - t0;
        if (i > 0) ms.push(timer ? await timer.read() : wall);
      }
      rates.push({ rows: m, flops: (8 * 2 * m * n * k) / (Math.min(...ms) / 1000) });
    }
  } finally {
    [w, x, out].forEach((b) => gpu.destroyBuffer(b));
    timer?.destroy();
  }
  return rates;
}

/** A one-row decode step of the tiny model: its wall time on the engine's path, and its GPU time (timestamps). */
async function tinyStep(gpu: Gpu): Promise<{ wallMs: number; gpuMs: number }> {
  const rig = makeRig(gpu, TINY, 1, 16);
  let wallMs: number;
  try {
    await rig.step(); // the prompt
    const ms: number[] = [];
    for (let i = 0; i < 10; i++) ms.push((await timed(rig)).ms);
    wallMs = percentile(ms.slice(2), 50); // the first steps compile the decode pipelines
  } finally {
    rig.destroy();
  }
  const model = LlamaModel.create(gpu, TINY, syntheticWeights(TINY), { weightDtype: 'f32', maxRows: 64, maxLogitRows: 1 });
  const pool = KvPool.create(gpu, { numLayers: TINY.numLayers, numKvHeads: TINY.numKvHeads, headDim: TINY.headDim, pageSize: 16, dtype: 'f16', numPages: 4 });
  try {
    const gpuMs = await timedDecodeStep(gpu, model, pool, new KVCacheManager(new BlockPool(pool.numPages), 16), TINY, 17);
    if (gpuMs === null) throw new Error('projection: this adapter has no timestamp queries; the calibration needs GPU times');
    return { wallMs, gpuMs };
  } finally {
    model.destroy();
    pool.destroy();
  }
}

// ---------------------------------------------------------------- validation

/** Median wall time of decode steps at each batch, and of the prefill steps that start them. */
async function measureSteps(gpu: Gpu, config: ModelConfig): Promise<{ kind: string; ms: number; shape: StepShape }[]> {
  const out: { kind: string; ms: number; shape: StepShape }[] = [];
  const warm = makeRig(gpu, config, 4, 16); // compiles every pipeline of both step kinds before anything is timed
  try {
    for (let i = 0; i < 3; i++) await warm.step();
  } finally {
    warm.destroy();
  }
  for (const batch of BATCHES) {
    const rig = makeRig(gpu, config, batch, 16);
    try {
      // 16-token prompts: batch × 16 rows fit one 64-row step up to batch 4
      let shape = await timed(rig);
      if (batch === 1 || batch === 4) out.push({ kind: `prefill ${batch}×16 tokens`, ms: shape.ms, shape: shape.shape });
      while (shape.shape.prefill.length) shape = await timed(rig);
      const ms: number[] = [];
      let last = shape.shape;
      for (let i = 0; i < 6; i++) {
        const s = await timed(rig);
        ms.push(s.ms);
        last = s.shape;
      }
      out.push({ kind: `decode batch ${batch}`, ms: percentile(ms, 50), shape: last });
    } finally {
      rig.destroy();
    }
  }
  return out;
}

// ---------------------------------------------------------------- projection

function shapeOf(name: string, c: ModelConfig, weightBytes: number, kvBytes: number, imageFlops = 0, imageWeightBytes = 0): ModelShape {
  return { name, text: c, weightBytesPerParam: weightBytes, kvBytesPerValue: kvBytes, imageFlops, imageWeightBytes };
}

/** SmolVLM-256M-Instruct (its config.json): the 135M decoder in f16, SigLIP-B/16 at 512 px, pixel shuffle 4 → 64 tokens per tile. */
function smolVlmShape(tiles: number): ModelShape {
  const text: ModelConfig = { ...PRESETS['smollm2-135m'], vocabSize: 49280, tieWordEmbeddings: false };
  const v = { hidden: 768, intermediate: 3072, layers: 12, patches: 1024, tiles, projectorIn: 768 * 16, projectorOut: 576, tokensPerTile: 64 };
  const visionParams = v.layers * (4 * v.hidden * v.hidden + 2 * v.hidden * v.intermediate) + v.projectorIn * v.projectorOut;
  return shapeOf('SmolVLM-256M', text, 2, 2, visionFlops(v), visionParams * 2);
}

interface Projection {
  device: string;
  projected: boolean;
  mu: number;
  aloneMs: number;
  runs: { multiple: number; rate: number; baseline: { ttftP50: number; tokPerS: number }; scheduler: { ttftP50: number; tokPerS: number; meanDecodeRows: number }; ttftRatio: number; throughputRatio: number }[];
}

function project(d: DeviceModel, shape: ModelShape, w: { n: number; maxTokens: number; imageTokens: number }): Projection {
  const cost = (s: StepShape) => stepMs(d, shape, s);
  const promptTokens = w.imageTokens + 24;
  const pageSize = 16;
  const pages = 16 * Math.ceil((promptTokens + w.maxTokens + 1) / pageSize) + 4;
  const one = [{ promptTokens, images: 1, maxTokens: w.maxTokens, arrivalMs: 0 }];
  const aloneMs = simulate('baseline', one, cost, { pages, pageSize }).wallMs;
  const mu = 1000 / aloneMs;
  const runs = RATE_MULTIPLES.map((multiple) => {
    const rate = multiple * mu;
    const reqs = evenArrivals(w.n, rate).map((arrivalMs) => ({ promptTokens, images: 1, maxTokens: w.maxTokens, arrivalMs }));
    const b = simulate('baseline', reqs, cost, { pages, pageSize });
    const s = simulate('scheduler', reqs, cost, { pages, pageSize });
    const baseline = { ttftP50: percentile(b.ttftMs, 50), tokPerS: (b.tokens * 1000) / b.wallMs };
    const scheduler = { ttftP50: percentile(s.ttftMs, 50), tokPerS: (s.tokens * 1000) / s.wallMs, meanDecodeRows: s.meanDecodeRows };
    return { multiple, rate, baseline, scheduler, ttftRatio: scheduler.ttftP50 / baseline.ttftP50, throughputRatio: scheduler.tokPerS / baseline.tokPerS };
  });
  return { device: d.name, projected: d.projected, mu, aloneMs, runs };
}

// ---------------------------------------------------------------- report

interface Report {
  bw: number;
  here: DeviceModel;
  validation: { model: string; kind: string; measuredMs: number; predictedMs: number; errorPct: number }[];
  meanAbsErr: number;
  projections: Projection[];
  n: number;
  maxTokens: number;
  tiles: number;
  imageTokens: number;
}

function report(r: Report): BenchResult {
  const rows = r.projections.flatMap((p) => p.runs.map((x) => [
    p.projected ? `${p.device} (projection)` : `${p.device} (model, calibrated here)`, `${x.multiple} μ = ${x.rate.toFixed(3)}`,
    x.baseline.ttftP50, x.scheduler.ttftP50, x.ttftRatio, x.baseline.tokPerS, x.scheduler.tokPerS, x.throughputRatio, x.scheduler.meanDecodeRows,
  ]));
  const plots: PlotSpec[] = [
    { title: `Step-time model vs measured on this adapter (mean |error| ${r.meanAbsErr.toFixed(1)} %)`, kind: 'bar', xLabel: 'step', yLabel: 'ms per step', series: [
      { name: 'measured', points: r.validation.map((v) => ({ x: `${v.model.split(' ')[0]} ${v.kind}`, y: v.measuredMs })) },
      { name: 'predicted', points: r.validation.map((v) => ({ x: `${v.model.split(' ')[0]} ${v.kind}`, y: v.predictedMs })) },
    ] },
    { title: 'Projected TTFT p50, scheduler ÷ one at a time (SmolVLM-256M)', kind: 'line', xLabel: 'arrival rate (× μ)', yLabel: 'TTFT ratio', series: r.projections.map((p) => ({ name: p.device, points: p.runs.map((x) => ({ x: x.multiple, y: x.ttftRatio })) })) },
    { title: 'Projected throughput, scheduler ÷ one at a time (SmolVLM-256M)', kind: 'line', xLabel: 'arrival rate (× μ)', yLabel: 'throughput ratio', series: r.projections.map((p) => ({ name: p.device, points: p.runs.map((x) => ({ x: x.multiple, y: x.throughputRatio })) })) },
  ];
  return {
    name: 'projection',
    data: { calibration: r.here, validation: r.validation, meanAbsErrorPct: r.meanAbsErr, projections: r.projections, workload: { n: r.n, maxTokens: r.maxTokens, tiles: r.tiles, imageTokens: r.imageTokens }, assumptions: { GPUS, BANDWIDTH_EFFICIENCY, COMPUTE_EFFICIENCY, GPU_FIXED_MS, GPU_PER_LAYER_MS } },
    table: { headers: ['device', 'arrival rate (req/s)', 'TTFT p50 one-at-a-time (ms)', 'TTFT p50 scheduler (ms)', 'TTFT ratio', 'tok/s one-at-a-time', 'tok/s scheduler', 'throughput ratio', 'mean decode rows'], rows },
    plots,
    notes: [
      `validation on this adapter (real engine steps, models the calibration never saw): mean |error| ${r.meanAbsErr.toFixed(1)} % over ${r.validation.length} step kinds — ${r.validation.map((v) => `${v.model.split(' ')[0]} ${v.kind}: ${v.measuredMs.toFixed(1)} measured / ${v.predictedMs.toFixed(1)} predicted ms (${v.errorPct >= 0 ? '+' : ''}${v.errorPct.toFixed(0)} %)`).join('; ')}`,
      `calibration here: copy bandwidth ${r.bw.toFixed(2)} GB/s; matmul ${r.here.rate.map((x) => `${(x.flops / 1e9).toFixed(2)} GFLOP/s at ${x.rows} rows`).join(', ')}; fixed ${r.here.fixedMs.toFixed(2)} ms per step; ${r.here.perLayerMs.toFixed(3)} ms per layer`,
      `workload (projected): ${r.n} requests, each one picture (${r.tiles} tiles × 64 = ${r.imageTokens} image tokens, the vision tower's run included in the step that starts its prompt) + 24 text tokens, ${r.maxTokens} output tokens, even arrivals at 1–8 × μ; the engine's default scheduler (64-token steps); f16 weights and KV`,
      `projected GPUs: published peak bandwidth × ${BANDWIDTH_EFFICIENCY} and FP32 peak × ${COMPUTE_EFFICIENCY} (assumed WGSL kernel efficiency, no tensor cores), ${GPU_FIXED_MS} ms fixed per step and ${GPU_PER_LAYER_MS} ms per layer (assumed); ${GPUS.map((g) => `${g.name}: ${g.gbps} GB/s, ${g.tflops} TFLOPS (${g.source})`).join('; ')}`,
      'rows labelled "(projection)" are predictions of the model, not measurements; the first device is the same model with this adapter\'s calibrated figures',
    ],
  };
}

function int(s: string, name: string): number {
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} ${s}: expected a positive integer`);
  return v;
}
