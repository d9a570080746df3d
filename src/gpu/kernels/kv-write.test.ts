import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, readBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { type KvGeometry, kvPageBytes } from '../kv-layout.ts';
import { encodeKvWrite } from './kv-write.ts';
import { decodeKvPool, encodeKvPool, kvImageIndex, kvImagePageElems, kvWriteRef } from './kv-write.ref.ts';

/** `count` distinct slots over `numPages` pages, in random (non-contiguous) order. */
function randomSlots(count: number, numPages: number, pageSize: number, rand: () => number): Uint32Array {
  const all = Array.from({ length: numPages * pageSize }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return Uint32Array.from(all.slice(0, count));
}

describe('kv_write kernel', () => {
  const cases: (KvGeometry & { n: number; numPages: number; extra: number })[] = [
    { numKvHeads: 1, headDim: 8, pageSize: 16, dtype: 'f32', n: 1, numPages: 3, extra: 0 },
    { numKvHeads: 3, headDim: 10, pageSize: 5, dtype: 'f32', n: 13, numPages: 7, extra: 5 },
    { numKvHeads: 2, headDim: 64, pageSize: 16, dtype: 'f32', n: 37, numPages: 6, extra: 0 },
    { numKvHeads: 1, headDim: 8, pageSize: 16, dtype: 'f16', n: 1, numPages: 3, extra: 0 },
    { numKvHeads: 3, headDim: 10, pageSize: 5, dtype: 'f16', n: 13, numPages: 7, extra: 5 },
    { numKvHeads: 2, headDim: 128, pageSize: 16, dtype: 'f16', n: 40, numPages: 5, extra: 3 },
  ];
  for (const c of cases) {
    it(`scatters bit-exactly: ${c.dtype} kvHeads=${c.numKvHeads} headDim=${c.headDim} pageSize=${c.pageSize} n=${c.n}`, async () => {
      const gpu = await testGpu();
      const r = rng(c.n * 31 + c.headDim);
      // src rows shaped like a fused qkv buffer: [extra | K heads | V heads | extra].
      const span = c.numKvHeads * c.headDim;
      const rowStride = 2 * span + 2 * c.extra;
      const kOffset = c.extra, vOffset = c.extra + span;
      const src = randomF32(c.n * rowStride, r, 3);
      const slots = randomSlots(c.n, c.numPages, c.pageSize, r);
      // Untouched slots keep what was there: start from random (f16-representable) contents.
      const before = decodeKvPool(encodeKvPool(randomF32(c.numPages * kvImagePageElems(c), r), c).buffer as ArrayBuffer, c);
      const gSrc = uploadBuffer(gpu, 'src', src), gSlots = uploadBuffer(gpu, 'slots', slots);
      const gPool = uploadBuffer(gpu, 'pool', encodeKvPool(before, c));
      const rec = new CommandRecorder(gpu);
      encodeKvWrite(rec, { ...c, src: gSrc, slots: gSlots, pool: gPool, rowStride, kOffset, vOffset });
      await rec.submit();

      const want = before.slice();
      kvWriteRef(want, src, slots, { ...c, rowStride, kOffset, vOffset });
      const got = new Uint32Array(await readBuffer(gpu, gPool));
      expect(got).toEqual(encodeKvPool(want, c));
      [gSrc, gSlots, gPool].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('writes a hand-checked slot (page 1, offset 1) and skips slots past the pool', async () => {
    const gpu = await testGpu();
    const g: KvGeometry = { numKvHeads: 1, headDim: 2, pageSize: 2, dtype: 'f32' };
    // token 0 → slot 3 = page 1 offset 1; token 1 → slot 9 = page 4, past the 2-page pool.
    const src = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]); // rows [K0 K1 V0 V1]
    const gSrc = uploadBuffer(gpu, 'src', src), gSlots = uploadBuffer(gpu, 'slots', new Uint32Array([3, 9]));
    const gPool = uploadBuffer(gpu, 'pool', new Float32Array(2 * kvPageBytes(g) / 4));
    const rec = new CommandRecorder(gpu);
    encodeKvWrite(rec, { ...g, src: gSrc, slots: gSlots, pool: gPool, n: 2, rowStride: 4, kOffset: 0, vOffset: 2 });
    await rec.submit();
    const pool = new Float32Array(await readBuffer(gpu, gPool));
    // [page][K|V][head][slot][d]: K of page 1 slot 1 at ((1*2+0)*1+0)*2+1)*2 = 10, V at ((1*2+1)*2+1)*2 = 14.
    expect(kvImageIndex(g, 1, 0, 0, 1, 0)).toBe(10);
    expect(kvImageIndex(g, 1, 1, 0, 1, 0)).toBe(14);
    expect(Array.from(pool)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4]);
    [gSrc, gSlots, gPool].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rounds f16 like the reference on ties and subnormals', async () => {
    const gpu = await testGpu();
    const g: KvGeometry = { numKvHeads: 1, headDim: 8, pageSize: 1, dtype: 'f16' };
    const ulp = 2 ** -10; // f16 spacing in [1, 2)
    const k = [1 + ulp / 2, 1 + (3 * ulp) / 2, -(1 + ulp / 2), 2 ** -20, 3 * 2 ** -26, 2 ** -25, 65504, -0];
    const v = [1 + ulp / 2 + 2 ** -20, 0.1, 1 / 3, -(2 ** -24), 2 ** -14 - 2 ** -25, 5e-8, 1e-9, 1234.5678];
    const src = new Float32Array([...k, ...v]);
    const slots = new Uint32Array([1]);
    const gSrc = uploadBuffer(gpu, 'src', src), gSlots = uploadBuffer(gpu, 'slots', slots);
    const gPool = uploadBuffer(gpu, 'pool', new Uint32Array(2 * kvPageBytes(g) / 4));
    const rec = new CommandRecorder(gpu);
    encodeKvWrite(rec, { ...g, src: gSrc, slots: gSlots, pool: gPool, n: 1, rowStride: 16, kOffset: 0, vOffset: 8 });
    await rec.submit();
    const want = new Float32Array(2 * kvImagePageElems(g));
    kvWriteRef(want, src, slots, { ...g, n: 1, rowStride: 16, kOffset: 0, vOffset: 8 });
    expect(Array.from(want.slice(16, 20))).toEqual([1, 1 + 2 * ulp, -1, 2 ** -20]); // ties to even
    expect(new Uint32Array(await readBuffer(gpu, gPool))).toEqual(encodeKvPool(want, g));
    [gSrc, gSlots, gPool].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects bad shapes with a message naming the problem', async () => {
    const gpu = await testGpu();
    const small = uploadBuffer(gpu, 'small', new Float32Array(8));
    const base = { src: small, slots: small, pool: small, n: 1, numKvHeads: 1, headDim: 4, rowStride: 8, kOffset: 0, vOffset: 4, pageSize: 1, dtype: 'f32' as const };
    const rec = new CommandRecorder(gpu);
    expect(() => encodeKvWrite(rec, { ...base, headDim: 3, rowStride: 6, vOffset: 3, dtype: 'f16' })).toThrow(/headDim must be even for f16/);
    expect(() => encodeKvWrite(rec, { ...base, n: 2 })).toThrow(/'src' holds 32 bytes but the call needs 64/);
    expect(() => encodeKvWrite(rec, { ...base, pageSize: 2 })).toThrow(/'pool' holds 32 bytes but the call needs 64/);
    expect(() => encodeKvWrite(rec, { ...base, numKvHeads: 0 })).toThrow(/numKvHeads must be a positive integer/);
    await rec.submit();
    gpu.destroyBuffer(small);
  });
});
