import { describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { CommandRecorder, grid } from './recorder.ts';
import { storageBuffer } from './buffers.ts';
import { Uniforms } from './uniforms.ts';
import addSource from '../../shaders/add.wgsl?raw';

describe('GPU layer', () => {
  it('tracks the bytes it allocates, with a peak', async () => {
    const gpu = await testGpu();
    const before = gpu.memory.snapshot();
    gpu.memory.resetPeak();
    const a = storageBuffer(gpu, 'test:a', 1000);
    const b = storageBuffer(gpu, 'test:b', 4096);
    expect(gpu.memory.snapshot().bytes - before.bytes).toBe(1000 + 4096);
    expect(gpu.memory.snapshot().byLabel['test']).toBe(5096);
    gpu.destroyBuffer(a);
    const after = gpu.memory.snapshot();
    expect(after.bytes - before.bytes).toBe(4096);
    expect(after.peakBytes - before.bytes).toBe(5096);
    gpu.destroyBuffer(b);
  });

  it('refuses a buffer larger than the adapter allows, naming it', async () => {
    const gpu = await testGpu();
    expect(() => storageBuffer(gpu, 'huge', gpu.limits.maxBufferSize + 4)).toThrow(/buffer 'huge' needs/);
  });

  it('caches pipelines by shader, constants and entry point', async () => {
    const gpu = await testGpu();
    const p1 = gpu.pipelines.get('add', addSource, { WG: 64 });
    expect(gpu.pipelines.get('add', addSource, { WG: 64 })).toBe(p1);
    expect(gpu.pipelines.get('add', addSource, { WG: 128 })).not.toBe(p1);
    expect(gpu.pipelines.get('add', addSource, { WG: 64 }, 'main_inplace')).not.toBe(p1);
  });

  it('turns an invalid dispatch into a rejected submit with the validation message', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'test:alias', 64);
    const rec = new CommandRecorder(gpu, 'bad');
    // the same buffer bound read-write and read-only in one dispatch is invalid
    rec.dispatch(gpu.pipelines.get('add', addSource, { WG: 64 }), [a, a, a], new Uniforms().u32(16), 1);
    await expect(rec.submit()).rejects.toThrow(/WebGPU rejected 'bad'/);
    gpu.destroyBuffer(a);
  });

  it('splits large 1-D grids over two dimensions', () => {
    expect(grid(10)).toEqual([10, 1, 1]);
    const [x, y] = grid(200_000);
    expect(x).toBeLessThanOrEqual(65535);
    expect(x * y).toBeGreaterThanOrEqual(200_000);
  });
});
