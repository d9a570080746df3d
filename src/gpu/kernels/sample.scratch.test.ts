import { it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readU32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { encodeSample, packSamplingParams, type SamplingParams } from './sample.ts';
it('timing', async () => {
  const gpu = await testGpu();
  const V = Number(process.env.SV ?? 10), R = Number(process.env.SR ?? 200);
  const l = randomF32(V * R, rng(1), 4);
  const gl = uploadBuffer(gpu, 'l', l);
  const go = storageBuffer(gpu, 'o', R * 4);
  const cfgs: [string, SamplingParams][] = [['greedy', { temperature: 0, topK: 0, topP: 1, seed: 1 }], ['temp', { temperature: 1, topK: 0, topP: 1, seed: 1 }], ['topk', { temperature: 1, topK: 3, topP: 1, seed: 1 }], ['topp', { temperature: 1, topK: 0, topP: 0.8, seed: 1 }], ['kp', { temperature: 1, topK: 5, topP: 0.8, seed: 1 }]];
  for (let rep = 0; rep < 2; rep++) for (const [name, p] of cfgs) {
    const gp = uploadBuffer(gpu, 'p', new Uint8Array(packSamplingParams(Array.from({ length: R }, (_, i) => ({ params: p, step: i })))));
    const t0 = performance.now();
    const rec = new CommandRecorder(gpu);
    encodeSample(rec, { logits: gl, params: gp, out: go, rows: R, vocab: V });
    await rec.submit();
    await readU32(gpu, go);
    console.log(name, ((performance.now() - t0) / R).toFixed(2), 'ms/row');
  }
});
