/**
 * Allocating the KV pool where GPU memory may be short. A buffer the device
 * cannot back is not an exception in WebGPU: createBuffer returns an invalid
 * buffer and the error goes to an error scope. Without one, the first step
 * fails far from the cause. Here the pool is allocated inside an
 * 'out-of-memory' scope; if it does not fit, smaller pools are tried (halving)
 * so that the error can name one that does.
 */
import type { Gpu } from '../gpu/context.ts';
import { KvPool, type KvPoolOptions } from './kv-pool.ts';

export class KvPoolOutOfMemoryError extends Error {
  constructor(
    readonly pages: number,
    readonly bytes: number,
    /** The largest pool (halving from `pages`) that was allocated, or 0 when not even one page fit. */
    readonly fitPages: number,
    readonly fitBytes: number,
    readonly gpuMessage: string,
  ) {
    super(
      `the KV pool of ${pages} pages (${mib(bytes)}) does not fit in GPU memory (${gpuMessage || 'out of memory'}); ` +
        (fitPages > 0 ? `${fitPages} pages (${mib(fitBytes)}) did fit: ask for that much or less` : 'not even one page fit: the device is out of memory'),
    );
    this.name = 'KvPoolOutOfMemoryError';
  }
}

/** `KvPool.create`, with out-of-memory caught and explained (see KvPoolOutOfMemoryError). */
export async function allocateKvPool(gpu: Gpu, options: KvPoolOptions): Promise<KvPool> {
  const { pool, error } = await tryCreate(gpu, options);
  if (!error) return pool;
  const pageBytes = pool.bytesPerPage;
  const pages = pool.numPages;
  let fit = 0;
  for (let n = Math.floor(pages / 2); n >= 1 && fit === 0; n = Math.floor(n / 2)) {
    const probe = await tryCreate(gpu, { ...shapeOf(options), numPages: n });
    if (probe.error) continue;
    probe.pool.destroy(); // only a measurement: the caller decides what to ask for
    fit = n;
  }
  throw new KvPoolOutOfMemoryError(pages, pages * pageBytes, fit, fit * pageBytes, error);
}

/** Creates a pool inside an out-of-memory scope; a pool that did not fit is destroyed again. */
async function tryCreate(gpu: Gpu, options: KvPoolOptions): Promise<{ pool: KvPool; error: string | null }> {
  gpu.device.pushErrorScope('out-of-memory');
  let pool: KvPool;
  try {
    pool = KvPool.create(gpu, options);
  } catch (e) {
    await gpu.device.popErrorScope(); // scopes must balance, also when create refuses (limits)
    throw e;
  }
  const err = await gpu.device.popErrorScope();
  if (err) pool.destroy();
  return { pool, error: err ? err.message || 'out of memory' : null };
}

function shapeOf(o: KvPoolOptions): Omit<KvPoolOptions, 'numPages' | 'capacityBytes'> {
  return { numLayers: o.numLayers, numKvHeads: o.numKvHeads, headDim: o.headDim, dtype: o.dtype, ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}) };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
