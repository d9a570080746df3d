import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { packF16, roundToF16 } from '../f16.ts';
import { encodeGather } from './embedding.ts';
import { gatherRef } from './embedding.ref.ts';

// A gather copies values: the GPU must match the reference exactly (f16
// tables against their f16-rounded values, unpack2x16float being exact).
describe('embedding gather kernel', () => {
  const cases = [
    { rows: 1, dim: 8, tableRows: 5, dtype: 'f32' as const },
    { rows: 7, dim: 33, tableRows: 50, dtype: 'f32' as const },
    { rows: 300, dim: 130, tableRows: 1000, dtype: 'f32' as const },
    { rows: 1, dim: 2, tableRows: 3, dtype: 'f16' as const },
    { rows: 9, dim: 34, tableRows: 40, dtype: 'f16' as const },
    { rows: 257, dim: 130, tableRows: 700, dtype: 'f16' as const },
  ];
  for (const { rows, dim, tableRows, dtype } of cases) {
    it(`matches the reference: ${dtype} rows=${rows} dim=${dim} tableRows=${tableRows}`, async () => {
      const gpu = await testGpu();
      const r = rng(rows * 1000 + dim);
      const values = randomF32(tableRows * dim, r, 3);
      const ids = Uint32Array.from({ length: rows }, () => Math.floor(r() * tableRows));
      if (rows > 2) { ids[1] = ids[0]; ids[rows - 1] = tableRows - 1; }
      const table = uploadBuffer(gpu, 'table', dtype === 'f16' ? packF16(values) : values);
      const gids = uploadBuffer(gpu, 'ids', ids);
      const out = storageBuffer(gpu, 'out', rows * dim * 4);
      const rec = new CommandRecorder(gpu);
      encodeGather(rec, { table, dtype, ids: gids, out, rows, dim, tableRows });
      await rec.submit();
      const want = gatherRef(dtype === 'f16' ? roundToF16(values) : values, ids, dim, tableRows);
      expect(await readF32(gpu, out)).toEqual(want);
      [table, gids, out].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('gathers a hand-checked case, zeros for an id out of range', async () => {
    const gpu = await testGpu();
    const table = uploadBuffer(gpu, 'table', new Float32Array([1, 2, 3, 4, 5, 6]));
    const table16 = uploadBuffer(gpu, 'table16', packF16(new Float32Array([1, 2, 3, 4, 5, 6])));
    const ids = uploadBuffer(gpu, 'ids', new Uint32Array([2, 0, 2, 7]));
    const out = storageBuffer(gpu, 'out', 32), out16 = storageBuffer(gpu, 'out16', 32);
    const rec = new CommandRecorder(gpu);
    encodeGather(rec, { table, dtype: 'f32', ids, out, rows: 4, dim: 2, tableRows: 3 });
    encodeGather(rec, { table: table16, dtype: 'f16', ids, out: out16, rows: 4, dim: 2, tableRows: 3 });
    await rec.submit();
    expect(Array.from(await readF32(gpu, out))).toEqual([5, 6, 1, 2, 5, 6, 0, 0]);
    expect(Array.from(await readF32(gpu, out16))).toEqual([5, 6, 1, 2, 5, 6, 0, 0]);
    [table, table16, ids, out, out16].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects bad shapes', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 64), b = storageBuffer(gpu, 'b', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeGather(rec, { table: a, dtype: 'f16', ids: a, out: b, rows: 1, dim: 3, tableRows: 1 })).toThrow(/even dim/);
    expect(() => encodeGather(rec, { table: a, dtype: 'f32', ids: a, out: b, rows: 1, dim: 4, tableRows: 5 })).toThrow(/'table' holds 64 bytes/);
    expect(() => encodeGather(rec, { table: a, dtype: 'f32', ids: b, out: b, rows: 1, dim: 4, tableRows: 1 })).toThrow(/out must not/);
    [a, b].forEach((x) => gpu.destroyBuffer(x));
  });
});
