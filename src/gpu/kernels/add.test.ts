import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeAdd } from './add.ts';
import { addRef } from './add.ref.ts';

describe('add kernel', () => {
  for (const n of [1, 7, 256, 1000, 70001]) {
    it(`matches the reference for n=${n}`, async () => {
      const gpu = await testGpu();
      const r = rng(n);
      const a = randomF32(n, r), b = randomF32(n, r);
      const ga = uploadBuffer(gpu, 'a', a), gb = uploadBuffer(gpu, 'b', b), go = storageBuffer(gpu, 'o', n * 4);
      const rec = new CommandRecorder(gpu);
      encodeAdd(rec, { a: ga, b: gb, out: go, n });
      encodeAdd(rec, { a: ga, b: gb, n }); // in place: a += b
      await rec.submit();
      expect(await readF32(gpu, go)).toEqual(addRef(a, b));
      expect(await readF32(gpu, ga)).toEqual(addRef(a, b));
      [ga, gb, go].forEach((x) => gpu.destroyBuffer(x));
    });
  }
  it('rejects a buffer too small for n', async () => {
    const gpu = await testGpu();
    const ga = storageBuffer(gpu, 'a', 16);
    expect(() => encodeAdd(new CommandRecorder(gpu), { a: ga, b: ga, n: 5 })).toThrow(/holds 16 bytes/);
    gpu.destroyBuffer(ga);
  });
});
