import { describe, expect, it } from 'vitest';
import { rng, shuffled, testGpu } from '../../../test/gpu.ts';
import { uploadBuffer, readBuffer, storageBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeKvCompact } from './kv-compact.ts';
import { kvCompactRef, kvWordIndex } from './kv-compact.ref.ts';
import { kvSelectRef } from './kv-select.ref.ts';
import { type KvGeometry, kvPageBytes } from '../kv-layout.ts';

function randomWords(n: number, rand: () => number): Uint32Array {
  return Uint32Array.from({ length: n }, () => Math.floor(rand() * 2 ** 32)); // any bits: NaN payloads, subnormals, packed f16 pairs
}

describe('kv_compact kernel', () => {
  const cases: (KvGeometry & { numPages: number; numTokens: number; ks: number[] })[] = [
    { numKvHeads: 1, headDim: 8, pageSize: 4, dtype: 'f32', numPages: 6, numTokens: 1, ks: [1] },
    { numKvHeads: 3, headDim: 8, pageSize: 4, dtype: 'f32', numPages: 9, numTokens: 13, ks: [1, 5, 12, 13] },
    { numKvHeads: 2, headDim: 64, pageSize: 16, dtype: 'f32', numPages: 7, numTokens: 50, ks: [17, 50] },
    { numKvHeads: 3, headDim: 8, pageSize: 4, dtype: 'f16', numPages: 9, numTokens: 13, ks: [1, 6, 13] },
    { numKvHeads: 2, headDim: 64, pageSize: 16, dtype: 'f16', numPages: 7, numTokens: 50, ks: [3, 33, 50] },
  ];
  for (const c of cases) {
    it(`gathers the kept tokens bit for bit: ${c.dtype} kvHeads=${c.numKvHeads} headDim=${c.headDim} pageSize=${c.pageSize} n=${c.numTokens} k=${c.ks.join(',')}`, async () => {
      const gpu = await testGpu();
      const r = rng(c.numTokens * 13 + c.headDim + c.numKvHeads);
      // The sequence takes a shuffled subset of the pages; the rest belong to others and must not change.
      const table = shuffled(c.numPages, r).slice(0, Math.ceil(c.numTokens / c.pageSize));
      const gTable = uploadBuffer(gpu, 'table', Uint32Array.from(table));
      for (const k of c.ks) {
        const before = randomWords((c.numPages * kvPageBytes(c)) / 4, r);
        const scores = Float32Array.from({ length: c.numKvHeads * c.numTokens }, () => Math.floor(r() * 7));
        const indices = kvSelectRef(scores, c.numKvHeads, c.numTokens, k);
        const gPool = uploadBuffer(gpu, 'pool', before), gIdx = uploadBuffer(gpu, 'indices', indices);
        const rec = new CommandRecorder(gpu);
        encodeKvCompact(rec, { ...c, pool: gPool, blockTable: gTable, indices: gIdx, numTokens: c.numTokens, k });
        await rec.submit();
        const got = new Uint32Array(await readBuffer(gpu, gPool));
        expect(got, `k=${k}`).toEqual(kvCompactRef(before, c, table, indices, k));
        if (k === c.numTokens) expect(got, 'k = numTokens leaves the pool bit-identical').toEqual(before);
        [gPool, gIdx].forEach((b) => gpu.destroyBuffer(b));
      }
      gpu.destroyBuffer(gTable);
    });
  }

  it('moves a hand-checked token: k=2 of 5 tokens, pageSize 2, table [2, 0, 1]', async () => {
    const gpu = await testGpu();
    const g: KvGeometry = { numKvHeads: 1, headDim: 1, pageSize: 2, dtype: 'f32' };
    // Word of (page, kv, slot) = 100*page + 10*kv + slot. Tokens 0..4 live at (p2,0) (p2,1) (p0,0) (p0,1) (p1,0).
    const before = new Uint32Array(3 * 4);
    for (let page = 0; page < 3; page++) for (const kv of [0, 1] as const) for (let s = 0; s < 2; s++) before[kvWordIndex(g, page, kv, 0, s, 0)] = 100 * page + 10 * kv + s;
    const gPool = uploadBuffer(gpu, 'pool', before);
    const gTable = uploadBuffer(gpu, 'table', new Uint32Array([2, 0, 1]));
    const gIdx = uploadBuffer(gpu, 'indices', new Uint32Array([1, 4])); // keep tokens 1 and 4
    const rec = new CommandRecorder(gpu);
    encodeKvCompact(rec, { ...g, pool: gPool, blockTable: gTable, indices: gIdx, numTokens: 5, k: 2 });
    await rec.submit();
    const got = new Uint32Array(await readBuffer(gpu, gPool));
    // Page 2 slots 0,1 now hold token 1 (201 / 211) and token 4 (100 / 110); pages 0 and 1 unchanged.
    expect(Array.from(got)).toEqual([0, 1, 10, 11, 100, 101, 110, 111, 201, 100, 211, 110]);
    [gPool, gTable, gIdx].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects bad shapes with a RangeError naming the problem', async () => {
    const gpu = await testGpu();
    const g: KvGeometry = { numKvHeads: 2, headDim: 8, pageSize: 4, dtype: 'f16' };
    const pool = storageBuffer(gpu, 'pool', 2 * kvPageBytes(g)), t = storageBuffer(gpu, 't', 4), i = storageBuffer(gpu, 'i', 16);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeKvCompact(rec, { ...g, pool, blockTable: t, indices: i, numTokens: 3, k: 4 })).toThrow(/k \(4\) must be at most numTokens \(3\)/);
    expect(() => encodeKvCompact(rec, { ...g, pool, blockTable: t, indices: i, numTokens: 5, k: 1 })).toThrow(/buffer 'blockTable' holds 4 bytes but the call needs 8/);
    expect(() => encodeKvCompact(rec, { ...g, pool, blockTable: t, indices: i, numTokens: 4, k: 3 })).toThrow(/buffer 'indices' holds 16 bytes but the call needs 24/);
    expect(() => encodeKvCompact(rec, { ...g, headDim: 7, pool, blockTable: t, indices: i, numTokens: 4, k: 1 })).toThrow(/headDim must be even/);
    await rec.submit();
    [pool, t, i].forEach((b) => gpu.destroyBuffer(b));
  });
});
