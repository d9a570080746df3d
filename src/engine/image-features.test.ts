/** The image-feature cache: one encoder run per image, pinned while used, LRU eviction of idle entries past the byte budget. */
import { beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { storageBuffer } from '../gpu/buffers.ts';
import type { Gpu } from '../gpu/context.ts';
import { ImageFeatureCache } from './image-features.ts';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

describe('ImageFeatureCache', () => {
  it('encodes each key once, also for concurrent requests of a new image', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    let runs = 0;
    const encode = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 5));
      return storageBuffer(gpu, 'test:features', 256);
    };
    const [a, b] = await Promise.all([cache.acquire('x', encode), cache.acquire('x', encode)]);
    expect(a).toBe(b);
    expect(await cache.acquire('x', encode)).toBe(a);
    expect(runs).toBe(1);
    expect({ hits: cache.hits, misses: cache.misses }).toEqual({ hits: 2, misses: 1 });
    for (let i = 0; i < 3; i++) cache.release('x');
    expect(() => cache.release('x')).toThrow(/not in use/);
    cache.clear();
  });

  it('keeps entries in use, evicts the least recently used idle ones past the budget', async () => {
    const cache = new ImageFeatureCache(gpu, 512);
    const enc = () => Promise.resolve(storageBuffer(gpu, 'test:features', 256));
    await cache.acquire('a', enc);
    await cache.acquire('b', enc);
    await cache.acquire('c', enc); // 768 bytes, all in use: nothing can go
    expect(cache.size).toBe(3);
    cache.release('b');
    expect(cache.size).toBe(2); // b was idle and over budget
    cache.release('a');
    cache.release('c');
    expect(cache.size).toBe(2);
    expect(cache.bytes).toBeLessThanOrEqual(512);
    cache.clear();
  });

  it('a failed encoder run caches nothing and the next request retries', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    await expect(cache.acquire('x', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(cache.size).toBe(0);
    const buf = await cache.acquire('x', () => Promise.resolve(storageBuffer(gpu, 'test:features', 16)));
    expect(buf).toBeDefined();
    cache.clear();
  });

  it('tryAcquire: a cached entry is pinned and counted as a hit; absent or still encoding → null, nothing counted', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    expect(cache.tryAcquire('x')).toBeNull();
    let finish = (_: GPUBuffer) => {};
    const pending = cache.acquire('x', () => new Promise<GPUBuffer>((r) => (finish = r)));
    expect(cache.tryAcquire('x')).toBeNull(); // being encoded: acquire joins that run instead
    expect({ hits: cache.hits, misses: cache.misses }).toEqual({ hits: 0, misses: 1 });
    finish(storageBuffer(gpu, 'test:features', 64));
    const buf = await pending;
    expect(cache.users('x')).toBe(1);
    expect(cache.tryAcquire('x')).toBe(buf);
    expect(cache.users('x')).toBe(2);
    expect({ hits: cache.hits, misses: cache.misses }).toEqual({ hits: 1, misses: 1 });
    cache.release('x');
    cache.release('x');
    expect(cache.users('x')).toBe(0);
    cache.clear();
  });
});
