/**
 * Out of GPU memory at pool creation. A real out-of-memory needs a real GPU
 * filled up, so the device here is the test's own with a byte budget in front:
 * an allocation past it reports out-of-memory to the enclosing error scope,
 * as WebGPU does. The pool's error names its size and one that fits; the
 * engine's names the options to pass; a failed load leaves nothing allocated.
 */
import { describe, expect, it } from 'vitest';
import { acquireNodeGpu } from '../gpu/node-gpu.ts';
import { Gpu } from '../gpu/context.ts';
import { allocateKvPool, KvPoolOutOfMemoryError } from './kv-pool-alloc.ts';
import { Engine } from '../engine/engine.ts';

/** `real` with at most `budget` bytes of buffers (counted by the Gpu's memory tracker) before out-of-memory. */
function tightGpu(real: Gpu, budget: number): Gpu {
  const scopes: boolean[] = [];
  let gpu: Gpu | null = null;
  const device = new Proxy(real.device, {
    get(target, key) {
      if (key === 'createBuffer') {
        return (d: GPUBufferDescriptor) => {
          if ((gpu?.memory.snapshot().bytes ?? 0) + d.size <= budget) return target.createBuffer(d);
          if (scopes.length) scopes[scopes.length - 1] = true;
          return target.createBuffer({ ...d, size: 4 }); // stands for the invalid buffer WebGPU returns
        };
      }
      if (key === 'pushErrorScope') return (f: GPUErrorFilter) => (scopes.push(false), target.pushErrorScope(f));
      if (key === 'popErrorScope') return async () => ((await target.popErrorScope()) ?? (scopes.pop() ? { message: 'simulated out of memory' } : null));
      const v: unknown = Reflect.get(target, key);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  gpu = new Gpu(device, real.adapter);
  return gpu;
}

const shape = { numLayers: 4, numKvHeads: 2, headDim: 64, pageSize: 16, dtype: 'f32' as const }; // 64 KiB per page over 4 layers

describe('a KV pool past GPU memory', () => {
  it('is refused with its size and the largest halving that fits; nothing stays allocated', async () => {
    const gpu = tightGpu(await acquireNodeGpu(), 5 * 2 ** 20);
    const err = await allocateKvPool(gpu, { ...shape, numPages: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvPoolOutOfMemoryError);
    const e = err as KvPoolOutOfMemoryError;
    expect(e.message).toMatch(/KV pool of 1000 pages \(62\.5 MiB\) does not fit in GPU memory .*62 pages \(3\.9 MiB\) did fit/);
    expect(e.fitPages).toBe(62);
    expect(gpu.memory.snapshot().bytes).toBe(0);
    const ok = await allocateKvPool(gpu, { ...shape, numPages: e.fitPages }); // the suggestion fits
    expect(ok.numPages).toBe(62);
    ok.destroy();
  });

  it('not even one page: says so', async () => {
    const gpu = tightGpu(await acquireNodeGpu(), 1000);
    await expect(allocateKvPool(gpu, { ...shape, numPages: 8 })).rejects.toThrow(/not even one page fit/);
  });

  it('Engine.load names kvCacheBytes / kvPages that fit, and loads with a smaller pool', async () => {
    const gpu = tightGpu(await acquireNodeGpu(), 40 * 2 ** 20);
    const err = (await Engine.load(gpu, '/models/stories260K', { kvCacheBytes: 256 * 2 ** 20 }).catch((e: unknown) => e)) as Error;
    const m = /kvCacheBytes: (\d+) \(or kvPages: (\d+)\)/.exec(err.message);
    expect(m, err.message).not.toBeNull();
    expect(gpu.memory.snapshot().bytes).toBe(0); // the failed load took nothing with it
    const engine = await Engine.load(gpu, '/models/stories260K', { kvCacheBytes: Math.floor(Number(m![1]) / 2) });
    expect((await engine.generate('Once upon a time', { maxTokens: 8 })).tokens.length).toBe(8);
    await engine.destroy();
  });
});
