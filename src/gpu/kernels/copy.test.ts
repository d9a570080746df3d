import { describe, expect, it } from 'vitest';
import { testGpu, rng } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readU32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeCopy } from './copy.ts';
import { copyRef } from './copy.ref.ts';

const randomWords = (n: number, r: () => number) => Uint32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32));

// A copy is exact: every word, bit for bit (NaN payloads included, words are u32).
describe('copy kernel', () => {
  for (const [words, size] of [[1, 8], [3, 3], [4, 9], [1027, 1030], [70001 * 4 + 2, 70001 * 4 + 2]]) {
    it(`copies ${words} words into a buffer of ${size} and leaves the rest alone`, async () => {
      const gpu = await testGpu();
      const r = rng(words);
      const src = randomWords(size, r), dst = randomWords(size, r);
      const gs = uploadBuffer(gpu, 'src', src), gd = uploadBuffer(gpu, 'dst', dst);
      const rec = new CommandRecorder(gpu);
      encodeCopy(rec, { src: gs, dst: gd, words });
      await rec.submit();
      const got = await readU32(gpu, gd, 0, size), want = copyRef(src, dst, words);
      expect(got.findIndex((v, i) => v !== want[i])).toBe(-1);
      [gs, gd].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('copies a hand-checked case', async () => {
    const gpu = await testGpu();
    const gs = uploadBuffer(gpu, 'src', new Uint32Array([1, 2, 3, 4, 5, 6])), gd = storageBuffer(gpu, 'dst', 24);
    const rec = new CommandRecorder(gpu);
    encodeCopy(rec, { src: gs, dst: gd, words: 5 });
    await rec.submit();
    expect(Array.from(await readU32(gpu, gd))).toEqual([1, 2, 3, 4, 5, 0]);
    [gs, gd].forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects a copy larger than a buffer, or onto itself', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 16), b = storageBuffer(gpu, 'b', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeCopy(rec, { src: b, dst: a, words: 5 })).toThrow(/'dst' holds 16 bytes/);
    expect(() => encodeCopy(rec, { src: b, dst: b, words: 1 })).toThrow(/different/);
    [a, b].forEach((x) => gpu.destroyBuffer(x));
  });
});
