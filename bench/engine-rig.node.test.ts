import { describe, expect, it } from 'vitest';
import { testGpu } from '../test/gpu.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { makeRig } from './engine-rig.ts';

const tiny: ModelConfig = {
  architecture: 'llama', vocabSize: 257, hiddenSize: 48, intermediateSize: 80, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 12,
  maxPositions: 128, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [],
};

async function greedy(reuseEncoding: boolean): Promise<number[][]> {
  const rig = makeRig(await testGpu(), tiny, 3, 19, { maxNew: 12, reuseEncoding });
  try {
    for (let i = 0; i < 40 && rig.outputs().some((o) => o.length < 12); i++) await rig.step();
    return rig.outputs();
  } finally {
    rig.destroy();
  }
}

describe('the forward step with reused encoding (EncodeCache, one GPU wait)', () => {
  it('gives the same greedy tokens as the per-step path it replaced, over prefill and decode at batch 3', async () => {
    const reused = await greedy(true);
    expect(reused.map((o) => o.length)).toEqual([12, 12, 12]);
    expect(reused).toEqual(await greedy(false));
  });
});
