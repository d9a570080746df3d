/**
 * The in-browser side of every benchmark: the runner (bench/run.ts) opens
 * this page and calls `window.runBench(name, options)`. Each benchmark is a
 * module in bench/suites exporting `run(gpu, options, log)`.
 */
import { acquireGpu } from '../src/gpu/device.ts';
import type { Gpu } from '../src/gpu/context.ts';
import type { BenchRestart, BenchResult } from './types.ts';

type Suite = { run: (gpu: Gpu, opts: Record<string, string>, log: (s: string) => void, carry?: unknown) => Promise<BenchResult | BenchRestart> };
const suites: Record<string, () => Promise<Suite>> = {
  decode: () => import('./suites/decode.ts'),
  concurrency: () => import('./suites/concurrency.ts'),
  compression: () => import('./suites/compression.ts'),
  memory: () => import('./suites/memory.ts'),
  vqa: () => import('./suites/vqa.ts'),
  strategies: () => import('./suites/strategies.ts'),
  reuse: () => import('./suites/reuse.ts'),
  soak: () => import('./suites/soak.ts'),
  projection: () => import('./suites/projection.ts'),
  batch: () => import('./suites/batch.ts'),
  quant: () => import('./suites/quant.ts'),
  peers: () => import('./suites/peers.ts'),
};

const logEl = document.getElementById('log')!;
function log(s: string): void {
  logEl.textContent += s + '\n';
  console.log(`[bench] ${s}`);
}

declare global {
  interface Window {
    runBench(name: string, opts: Record<string, string>, carry?: unknown): Promise<(BenchResult | BenchRestart) & { adapter: unknown }>;
  }
}

window.runBench = async (name, opts, carry) => {
  const load = suites[name];
  if (!load) throw new Error(`unknown benchmark '${name}'; known: ${Object.keys(suites).join(', ')}`);
  const gpu = await acquireGpu();
  log(`adapter: ${gpu.adapter.vendor} ${gpu.adapter.architecture} ${gpu.adapter.description}`);
  const suite = await load();
  const result = await suite.run(gpu, opts, log, carry);
  gpu.destroy();
  return { ...result, adapter: { ...gpu.adapter, timestamps: gpu.hasTimestamps, subgroups: gpu.hasSubgroups, f16: gpu.hasF16 } };
};
