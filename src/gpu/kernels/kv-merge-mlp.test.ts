import { describe, expect, it } from 'vitest';
import { rng, shuffled, testGpu } from '../../../test/gpu.ts';
import { readBuffer, storageBuffer, uploadBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { decodeKvPage, encodeKvPage, type KvGeometry, kvPageElems } from '../kv-layout.ts';
import { encodeKvMergeMlp, kvMergeMlpWeightFloats } from './kv-merge-mlp.ts';
import { kvMergeMlpRef } from './kv-merge-mlp.ref.ts';

interface Case extends KvGeometry {
  numPages: number;
  factor: number;
  groups: number;
  start: number;
}

describe('kv_merge_mlp kernel (CCM)', () => {
  const cases: Case[] = [
    { numKvHeads: 1, headDim: 8, pageSize: 4, dtype: 'f32', numPages: 5, factor: 1, groups: 3, start: 2 },
    { numKvHeads: 2, headDim: 32, pageSize: 16, dtype: 'f32', numPages: 8, factor: 4, groups: 16, start: 9 },
    { numKvHeads: 3, headDim: 8, pageSize: 4, dtype: 'f32', numPages: 9, factor: 5, groups: 3, start: 7 },
    { numKvHeads: 2, headDim: 64, pageSize: 16, dtype: 'f16', numPages: 6, factor: 3, groups: 7, start: 5 },
    { numKvHeads: 1, headDim: 24, pageSize: 8, dtype: 'f16', numPages: 7, factor: 4, groups: 5, start: 13 },
  ];
  for (const c of cases) {
    it(`= its reference on random rows and weights: ${c.dtype} kvHeads=${c.numKvHeads} headDim=${c.headDim} pageSize=${c.pageSize} factor=${c.factor} groups=${c.groups} start=${c.start}`, async () => {
      const gpu = await testGpu();
      const r = rng(c.headDim * 31 + c.factor * 7 + c.groups);
      const rand = () => r() * 2 - 1;
      const tokens = c.start + c.groups * c.factor;
      const table = shuffled(c.numPages, r).slice(0, Math.ceil(tokens / c.pageSize));
      const elems = kvPageElems(c);
      const pages = Array.from({ length: c.numPages }, () => encodeKvPage(c, Float32Array.from({ length: elems }, rand), Float32Array.from({ length: elems }, rand)));
      const words = new Uint32Array(pages.reduce((n, p) => n + p.length, 0));
      pages.forEach((p, i) => words.set(p, i * p.length));
      const values = pages.map((p) => decodeKvPage(c, p)); // what the pool holds (f16-rounded)
      const rows = (t: number, half: 0 | 1, h: number) => {
        const page = values[table[Math.floor(t / c.pageSize)]];
        const at = (h * c.pageSize + (t % c.pageSize)) * c.headDim;
        return (half === 0 ? page.k : page.v).subarray(at, at + c.headDim);
      };
      const scale = 1 / Math.sqrt(c.factor * c.headDim);
      const weights = Float32Array.from({ length: kvMergeMlpWeightFloats(c.headDim, c.factor) }, () => rand() * scale * 2);
      const want = kvMergeMlpRef(rows, weights, c);

      const gPool = uploadBuffer(gpu, 'pool', words);
      const gTable = uploadBuffer(gpu, 'table', Uint32Array.from(table));
      const gW = uploadBuffer(gpu, 'weights', weights);
      const gOut = storageBuffer(gpu, 'out', want.length * 4);
      const rec = new CommandRecorder(gpu);
      encodeKvMergeMlp(rec, { ...c, pool: gPool, blockTable: gTable, weights: gW, out: gOut });
      await rec.submit();
      const got = new Float32Array(await readBuffer(gpu, gOut));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
      expect(worst).toBeLessThan(1e-5);
      expect(new Uint32Array(await readBuffer(gpu, gPool)), 'the pool is only read').toEqual(words);
      [gPool, gTable, gW, gOut].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('refuses what it cannot do, naming it', async () => {
    const gpu = await testGpu();
    const g: KvGeometry = { numKvHeads: 1, headDim: 8, pageSize: 4, dtype: 'f32' };
    const b = storageBuffer(gpu, 'b', 4096);
    const rec = new CommandRecorder(gpu);
    const base = { ...g, pool: b, blockTable: storageBuffer(gpu, 't', 64), weights: storageBuffer(gpu, 'w', kvMergeMlpWeightFloats(8, 2) * 4), out: storageBuffer(gpu, 'o', 4096), factor: 2, groups: 2, start: 0 };
    expect(() => encodeKvMergeMlp(rec, { ...base, factor: 0 })).toThrow(/factor must be a positive integer/);
    expect(() => encodeKvMergeMlp(rec, { ...base, out: b })).toThrow(/out must not be the pool/);
    expect(() => encodeKvMergeMlp(rec, { ...base, weights: storageBuffer(gpu, 'w2', 16) })).toThrow(/buffer 'weights' holds 16 bytes/);
    expect(() => encodeKvMergeMlp(rec, { ...base, headDim: 512 })).toThrow(/over the kernel's 256/);
  });
});
