import { it, expect } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readU32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeSample, packSamplingParams, type SamplingParams } from './sample.ts';
import { sampleRef } from './sample.ref.ts';
it('matches', async () => {
  const gpu = await testGpu();
  for (const V of [7, 300, 5000, 49280]) {
    const r = rng(V);
    const rows: { params: SamplingParams; step: number }[] = [];
    for (let i = 0; i < 25; i++) rows.push({ params: { temperature: [0.3, 0.7, 1, 2, 0][i % 5], topK: [0, 1, 5, 40, 100000][i % 5], topP: [1, 0.9, 0.5, 0.99, 1e-6][(i >> 2) % 5], seed: i * 17 }, step: i });
    const l = randomF32(V * rows.length, r, 4);
    const gl = uploadBuffer(gpu, 'l', l);
    const gp = uploadBuffer(gpu, 'p', new Uint8Array(packSamplingParams(rows)));
    const go = storageBuffer(gpu, 'o', rows.length * 4);
    for (let rep = 0; rep < 2; rep++) {
    const t0 = performance.now();
    const rec = new CommandRecorder(gpu);
    encodeSample(rec, { logits: gl, params: gp, out: go, rows: rows.length, vocab: V });
    await rec.submit();
    const got = Array.from(await readU32(gpu, go));
    const t1 = performance.now();
    const want = rows.map((x, i) => sampleRef(l.subarray(i * V, (i + 1) * V), x.params, x.step));
    console.log(V, 'gpu ms/row', ((t1 - t0)/rows.length).toFixed(1), 'ref ms', (performance.now() - t1).toFixed(0), got.join(','), '\n', want.join(','));
    expect(got).toEqual(want);
    }
  }
});
