import { describe, expect, it } from 'vitest';
import { rng, testGpu } from '../../../test/gpu.ts';
import { kvPageWords } from '../../gpu/kv-layout.ts';
import { KvPool } from '../kv-pool.ts';
import { PageTransfer } from './page-transfer.ts';

/** Random words for every layer of `page`, written into the pool; returns them per layer. */
function fill(pool: KvPool, page: number, rand: () => number): Uint32Array[] {
  return pool.layers.map((_, l) => {
    const w = Uint32Array.from({ length: kvPageWords(pool.geometry) }, () => Math.floor(rand() * 2 ** 32));
    pool.writePageWords(l, page, w);
    return w;
  });
}

describe('PageTransfer', () => {
  it.each([
    { dtype: 'f32' as const, numLayers: 3, numKvHeads: 3, headDim: 6, pageSize: 5 },
    { dtype: 'f16' as const, numLayers: 2, numKvHeads: 1, headDim: 8, pageSize: 16 },
  ])('downloads pages of every layer in one batch, bit for bit, and uploads them into other pages ($dtype)', async (shape) => {
    const gpu = await testGpu();
    const pool = KvPool.create(gpu, { ...shape, numPages: 9 });
    const rand = rng(7);
    const src = [4, 1, 7];
    const want = src.map((p) => fill(pool, p, rand));
    const t = new PageTransfer(gpu, pool);
    const got = await t.download(src);
    expect(got).toHaveLength(3);
    got.forEach((buf, i) => {
      expect(buf.byteLength).toBe(pool.bytesPerPage);
      for (let l = 0; l < shape.numLayers; l++) {
        expect(new Uint32Array(buf, l * pool.layerPageBytes, kvPageWords(pool.geometry))).toEqual(want[i][l]);
      }
    });
    expect(t.stats).toMatchObject({ downloads: 1, pagesDown: 3, bytesDown: 3 * pool.bytesPerPage });
    t.upload([0, 8, 2], got);
    for (const [i, p] of [0, 8, 2].entries()) for (let l = 0; l < shape.numLayers; l++) expect(await pool.readPageWords(l, p)).toEqual(want[i][l]);
    pool.destroy();
  });

  it('a download submitted before later writes sees the old contents (queue order)', async () => {
    const gpu = await testGpu();
    const pool = KvPool.create(gpu, { numLayers: 1, numKvHeads: 1, headDim: 4, pageSize: 2, dtype: 'f32', numPages: 2 });
    const before = fill(pool, 1, rng(1));
    const t = new PageTransfer(gpu, pool);
    const pending = t.download([1]);
    fill(pool, 1, rng(2)); // overwritten after the download was submitted
    expect(new Uint32Array((await pending)[0])).toEqual(before[0]);
    pool.destroy();
  });

  it('refuses pages outside the pool and buffers of the wrong size', async () => {
    const gpu = await testGpu();
    const pool = KvPool.create(gpu, { numLayers: 1, numKvHeads: 1, headDim: 4, pageSize: 2, dtype: 'f32', numPages: 2 });
    const t = new PageTransfer(gpu, pool);
    expect(() => t.download([2])).toThrow(/page 2 is not in 0..1/);
    expect(() => t.upload([0], [new ArrayBuffer(4)])).toThrow(/has 4 bytes, a page is 64/);
    expect(() => t.upload([0, 1], [new ArrayBuffer(64)])).toThrow(/2 pages but 1 buffers/);
    expect(await t.download([])).toEqual([]);
    await expect(gpu.device.popErrorScope()).rejects.toThrow(); // no scope left behind
    pool.destroy();
  });
});
