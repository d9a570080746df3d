/**
 * The GPU for tests: Node's `webgpu` package under vitest's node project,
 * `navigator.gpu` in headless Chromium under the browser project.
 */
import { acquireGpu } from '../src/gpu/device.ts';
import type { Gpu } from '../src/gpu/context.ts';

let shared: Promise<Gpu> | null = null;

export const inBrowser = typeof window !== 'undefined';

export function testGpu(): Promise<Gpu> {
  shared ??= inBrowser ? acquireGpu() : nodeGpu();
  return shared;
}

async function nodeGpu(): Promise<Gpu> {
  const path = '../src/gpu/node-gpu.ts';
  const mod = (await import(/* @vite-ignore */ path)) as typeof import('../src/gpu/node-gpu.ts');
  return mod.acquireNodeGpu();
}

/** Seeded PRNG (mulberry32) so random test inputs are reproducible. */
export { mulberry32 as rng } from '../bench/rng.ts';

/** 0..n-1 in a random order (Fisher–Yates on `rand`): e.g. a sequence's pages scattered over the pool. */
export function shuffled(n: number, rand: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** Largest |a-b| / (atol + rtol*|b|) over elements; <= 1 means within tolerance. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-5, rtol = 1e-4): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}
