import type { ModelConfig } from '../src/model/config.ts';
import type { CpuTensor } from '../src/model/weights-cpu.ts';
import { packF16 } from '../src/gpu/f16.ts';

/**
 * Random Llama weights of a real model's shapes, made in memory: the decode
 * benchmark measures speed, which depends on shapes and dtypes, not values.
 */
export const PRESETS: Record<string, ModelConfig> = {
  // HuggingFaceTB/SmolLM2-135M's shapes (~135M parameters incl. tied embeddings)
  'smollm2-135m': {
    architecture: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64,
    maxPositions: 2048, rmsNormEps: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [0],
  },
  // a ~20M model for quick runs
  'llama-20m': {
    architecture: 'llama', vocabSize: 8192, hiddenSize: 384, intermediateSize: 1024, numLayers: 8, numHeads: 6, numKvHeads: 2, headDim: 64,
    maxPositions: 1024, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [0],
  },
};

export function parameterCount(c: ModelConfig): number {
  const attn = c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim * c.hiddenSize;
  const mlp = 3 * c.hiddenSize * c.intermediateSize;
  const embed = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  return c.numLayers * (attn + mlp + 2 * c.hiddenSize) + embed + c.hiddenSize;
}

export function syntheticWeights(c: ModelConfig, seed = 1): Map<string, CpuTensor> {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const linear = (rows: number, cols: number): CpuTensor => {
    const scale = 2 / Math.sqrt(cols);
    const f = new Float32Array(rows * cols);
    for (let i = 0; i < f.length; i++) f[i] = rand() * scale;
    return { dtype: 'f16', shape: [rows, cols], data: new Uint16Array(packF16(f).buffer, 0, f.length) };
  };
  const ones = (n: number): CpuTensor => ({ dtype: 'f32', shape: [n], data: new Float32Array(n).fill(1) });
  const w = new Map<string, CpuTensor>();
  const hd = c.headDim;
  w.set('model.embed_tokens.weight', linear(c.vocabSize, c.hiddenSize));
  if (!c.tieWordEmbeddings) w.set('lm_head.weight', linear(c.vocabSize, c.hiddenSize));
  w.set('model.norm.weight', ones(c.hiddenSize));
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    w.set(`${p}.input_layernorm.weight`, ones(c.hiddenSize));
    w.set(`${p}.post_attention_layernorm.weight`, ones(c.hiddenSize));
    w.set(`${p}.self_attn.q_proj.weight`, linear(c.numHeads * hd, c.hiddenSize));
    w.set(`${p}.self_attn.k_proj.weight`, linear(c.numKvHeads * hd, c.hiddenSize));
    w.set(`${p}.self_attn.v_proj.weight`, linear(c.numKvHeads * hd, c.hiddenSize));
    w.set(`${p}.self_attn.o_proj.weight`, linear(c.hiddenSize, c.numHeads * hd));
    w.set(`${p}.mlp.gate_proj.weight`, linear(c.intermediateSize, c.hiddenSize));
    w.set(`${p}.mlp.up_proj.weight`, linear(c.intermediateSize, c.hiddenSize));
    w.set(`${p}.mlp.down_proj.weight`, linear(c.hiddenSize, c.intermediateSize));
  }
  return w;
}
