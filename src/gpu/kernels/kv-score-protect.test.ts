import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { readF32, uploadBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeKvScoreProtect } from './kv-score-protect.ts';
import { kvScoreProtectRef } from './kv-score-protect.ref.ts';

describe('kv_score_protect', () => {
  const cases: [number, number, number, number][] = [
    [1, 1, 0, 1], [2, 7, 2, 5], [3, 33, 0, 29], [4, 1000, 17, 1000], [2, 5, 3, 3],
  ];
  for (const [heads, n, start, end] of cases) {
    it(`protects outside [${start}, ${end}) for ${heads} heads × ${n} tokens`, async () => {
      const gpu = await testGpu();
      const scores = randomF32(heads * n, rng(n + heads));
      const buf = uploadBuffer(gpu, 'test:scores', scores);
      const rec = new CommandRecorder(gpu);
      encodeKvScoreProtect(rec, { scores: buf, numKvHeads: heads, numTokens: n, start, end });
      await rec.submit();
      expect(await readF32(gpu, buf, 0, heads * n)).toEqual(kvScoreProtectRef(scores, n, start, end));
      gpu.destroyBuffer(buf);
    });
  }
  it('rejects a region outside the sequence', async () => {
    const gpu = await testGpu();
    const buf = uploadBuffer(gpu, 'test:scores', new Float32Array(8));
    expect(() => encodeKvScoreProtect(new CommandRecorder(gpu), { scores: buf, numKvHeads: 2, numTokens: 4, start: 1, end: 5 })).toThrow(/within 0..4/);
    gpu.destroyBuffer(buf);
  });
});
