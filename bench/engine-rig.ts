/**
 * The engine's step path without the engine: `batch` requests through the
 * real Scheduler → StepExecutor → LlamaModel on synthetic or loaded
 * weights, one step at a time, so benchmarks can time steps of a chosen
 * shape (bench/suites/projection.ts, batch.ts).
 */
import type { Gpu } from '../src/gpu/context.ts';
import type { CpuTensor } from '../src/model/weights-cpu.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { WeightDtype } from '../src/gpu/kernels/matmul.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { KvPool } from '../src/kv/kv-pool.ts';
import { BlockPool } from '../src/kv/block-pool.ts';
import { KVCacheManager } from '../src/kv/kv-cache-manager.ts';
import { StepExecutor } from '../src/engine/step-executor.ts';
import { PressCompressStage } from '../src/engine/compress-stage.ts';
import { Request } from '../src/scheduler/request.ts';
import { Scheduler } from '../src/scheduler/scheduler.ts';
import type { StepPlan } from '../src/scheduler/step-plan.ts';
import { syntheticWeights } from './synthetic-model.ts';
import { planShape } from './projection/simulate.ts';
import type { StepShape } from './projection/step-cost.ts';

export interface Rig {
  step(): Promise<StepShape>;
  /** The last step's CPU time in the scheduler (schedule + update) and in execute, ms. */
  lastMs: { schedule: number; execute: number; update: number };
  readonly model: LlamaModel;
  /** Its `profile` times the forward steps (bench/suites/batch.ts). */
  readonly executor: StepExecutor;
  /** Each request's generated ids so far. */
  outputs(): number[][];
  destroy(): void;
}

/** `batch` requests of `promptLen` tokens on the engine's own path: Scheduler → StepExecutor → LlamaModel. */
export function makeRig(gpu: Gpu, config: ModelConfig, batch: number, promptLen: number, o: { maxNew?: number; weights?: Map<string, CpuTensor>; dtype?: WeightDtype; reuseEncoding?: boolean } = {}): Rig {
  const maxNew = o.maxNew ?? 64;
  const pageSize = 16;
  const model = LlamaModel.create(gpu, config, o.weights ?? syntheticWeights(config), { weightDtype: o.dtype ?? 'f32', maxRows: 64, maxLogitRows: 16, reuseEncoding: o.reuseEncoding ?? true });
  const pool = KvPool.create(gpu, { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, pageSize, dtype: 'f16', numPages: batch * Math.ceil((promptLen + maxNew + 1) / pageSize) + 2 });
  const kv = new KVCacheManager(new BlockPool(pool.numPages), pageSize);
  const sched = new Scheduler(kv, { maxBatchTokens: 64, maxPrefillChunk: 64, admissionReservePages: 0 });
  const executor = new StepExecutor(model, kv, { layers: pool.layers, pageSize, dtype: 'f16' }, new PressCompressStage(gpu, config, pool, kv));
  const reqs = Array.from({ length: batch }, (_, b) => new Request(`v${b}`, Array.from({ length: promptLen }, (_, i) => (b * 131 + i * 7 + 1) % config.vocabSize), { maxNewTokens: maxNew, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 } }));
  reqs.forEach((r) => sched.add(r));
  const images = new Map<Request, number>(), encoded = new Set<Request>();
  const lastMs = { schedule: 0, execute: 0, update: 0 };
  return {
    model,
    executor,
    lastMs,
    outputs: () => reqs.map((r) => [...r.outputIds]),
    async step() {
      const t0 = performance.now();
      const plan: StepPlan = sched.schedule();
      const t1 = performance.now();
      const outcome = await executor.execute(plan);
      const t2 = performance.now();
      sched.update(plan, outcome);
      Object.assign(lastMs, { schedule: t1 - t0, execute: t2 - t1, update: performance.now() - t2 });
      return planShape(plan, images, encoded);
    },
    destroy() {
      reqs.forEach((r) => sched.abort(r.id));
      model.destroy();
      pool.destroy();
    },
  };
}

export async function timed(rig: Rig): Promise<{ ms: number; shape: StepShape }> {
  const t0 = performance.now();
  const shape = await rig.step();
  return { ms: performance.now() - t0, shape };
}

