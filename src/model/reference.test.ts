import { describe, expect, it } from 'vitest';
import { rng } from '../../test/gpu.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { ReferenceModel, argmax, ropeInvFreq, ropeTable } from './reference.ts';
import { expectedTensorShapes, f32ArrayToF16, numel, roundF16, type CpuTensor } from './weights-cpu.ts';

/** Random weights for a config: norms ≈ 1, linear ~ N(0, 1/fan_in)-ish (uniform), head scaled up. */
function randomWeights(config: ModelConfig, seed: number, dtype: 'f32' | 'f16' = 'f32'): Map<string, CpuTensor> {
  const rand = rng(seed);
  const out = new Map<string, CpuTensor>();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const n = numel(shape);
    const data = new Float32Array(n);
    const scale = name.endsWith('norm.weight') ? 0.2 : name.endsWith('bias') ? 0.3 : (name.includes('embed') || name.includes('lm_head') ? 6 : 2.5) / Math.sqrt(shape[1]);
    for (let i = 0; i < n; i++) data[i] = (name.endsWith('norm.weight') ? 1 : 0) + (rand() * 2 - 1) * scale;
    out.set(name, dtype === 'f32' ? { dtype, shape, data } : { dtype, shape, data: f32ArrayToF16(data) });
  }
  return out;
}

const llamaGqa = parseConfig({
  architectures: ['LlamaForCausalLM'], vocab_size: 96, hidden_size: 48, intermediate_size: 80, num_hidden_layers: 2,
  num_attention_heads: 6, num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, attention_bias: true, tie_word_embeddings: false, eos_token_id: 2,
});
const qwenTied = parseConfig({
  architectures: ['Qwen2ForCausalLM'], vocab_size: 80, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 1, max_position_embeddings: 256, rope_theta: 1e6, tie_word_embeddings: true,
});

describe('RoPE tables', () => {
  it('computes HF inv_freq, with llama3 scaling (hand-checked)', () => {
    const base = { ...llamaGqa, headDim: 8, ropeTheta: 10000 };
    expect(Array.from(ropeInvFreq(base))).toEqual([0, 1, 2, 3].map((i) => 1 / 10000 ** ((2 * i) / 8)));
    const llama3 = ropeInvFreq({
      ...base,
      ropeScaling: { ropeType: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 128 },
    });
    // High band unchanged, medium band smoothed, low band divided by the factor (values from HF's formula in Python).
    const want = [1.0, 0.042751178754307596, 0.00125, 0.000125];
    want.forEach((w, i) => expect(llama3[i]).toBeCloseTo(w, 15));
    const linear = ropeInvFreq({ ...base, ropeScaling: { ropeType: 'linear', factor: 4 } });
    expect(linear[1]).toBeCloseTo(0.1 / 4, 15);
  });

  it('builds cos/sin in f64 and rounds to f32', () => {
    const { cos, sin } = ropeTable(llamaGqa, 5);
    const inv = ropeInvFreq(llamaGqa);
    for (let p = 0; p < 5; p++) {
      for (let i = 0; i < 4; i++) {
        expect(cos[p * 4 + i]).toBe(Math.fround(Math.cos(p * inv[i])));
        expect(sin[p * 4 + i]).toBe(Math.fround(Math.sin(p * inv[i])));
      }
    }
  });
});

describe('ReferenceModel', () => {
  it('matches a hand-checked one-layer model', () => {
    // Zero q/k and MLP, identity v/o/head: x = e + norm(e) ∥ e, so logits = e / rms(e) = [0.6√2, 0.8√2].
    const config = parseConfig({
      architectures: ['LlamaForCausalLM'], vocab_size: 2, hidden_size: 2, intermediate_size: 1, num_hidden_layers: 1,
      num_attention_heads: 1, num_key_value_heads: 1, max_position_embeddings: 8, rms_norm_eps: 1e-12,
    });
    const t = (shape: number[], values: number[]): CpuTensor => ({ dtype: 'f32', shape, data: new Float32Array(values) });
    const weights = new Map<string, CpuTensor>([
      ['model.embed_tokens.weight', t([2, 2], [3, 4, 1, 0])],
      ['model.layers.0.input_layernorm.weight', t([2], [1, 1])],
      ['model.layers.0.self_attn.q_proj.weight', t([2, 2], [0, 0, 0, 0])],
      ['model.layers.0.self_attn.k_proj.weight', t([2, 2], [0, 0, 0, 0])],
      ['model.layers.0.self_attn.v_proj.weight', t([2, 2], [1, 0, 0, 1])],
      ['model.layers.0.self_attn.o_proj.weight', t([2, 2], [1, 0, 0, 1])],
      ['model.layers.0.post_attention_layernorm.weight', t([2], [1, 1])],
      ['model.layers.0.mlp.gate_proj.weight', t([1, 2], [0, 0])],
      ['model.layers.0.mlp.up_proj.weight', t([1, 2], [0, 0])],
      ['model.layers.0.mlp.down_proj.weight', t([2, 1], [0, 0])],
      ['model.norm.weight', t([2], [1, 1])],
      ['lm_head.weight', t([2, 2], [1, 0, 0, 1])],
    ]);
    const model = new ReferenceModel(config, weights);
    const [l0, l1] = model.forwardAll([0, 0]);
    expect(l0[0]).toBeCloseTo(0.6 * Math.SQRT2, 6);
    expect(l0[1]).toBeCloseTo(0.8 * Math.SQRT2, 6);
    expect(Array.from(l1)).toEqual(Array.from(l0)); // uniform attention over two equal values
    expect(model.position).toBe(2);
  });

  for (const [label, config] of [['llama GQA 3:1 with bias, untied', llamaGqa], ['qwen2 MQA, tied', qwenTied]] as const) {
    it(`${label}: forward, forwardAll and one-by-one agree bitwise; greedy restarts`, () => {
      const model = new ReferenceModel(config, randomWeights(config, 7));
      const prompt = [1, 5, 9, 33, 17, 4, 60, 2, 11];
      const all = model.forwardAll(prompt);
      model.reset();
      const last = model.forward(prompt);
      expect(Array.from(last)).toEqual(Array.from(all[all.length - 1]));
      model.reset();
      prompt.forEach((tok, i) => expect(Array.from(model.forward([tok]))).toEqual(Array.from(all[i])));
      const g1 = model.greedy(prompt, 20, []);
      const g2 = model.greedy(prompt, 20, []);
      expect(g1).toEqual(g2);
      expect(g1[0]).toBe(argmax(last));
      expect(model.position).toBe(prompt.length + 19);
      expect(model.greedy([3, 4], 20, [])).not.toEqual(model.greedy([40, 41], 20, []));
    });

    it(`${label}: f16 KV cache mostly agrees with f32`, () => {
      const weights = randomWeights(config, 11);
      const f32 = new ReferenceModel(config, weights);
      const f16 = new ReferenceModel(config, weights, { kvDtype: 'f16' });
      const prompt = [1, 7, 3, 22, 50, 13];
      const a = f32.forwardAll(prompt);
      const b = f16.forwardAll(prompt);
      let worst = 0;
      a.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i][j])))));
      expect(worst).toBeLessThan(0.05); // logits std ≈ 3
      const { k, v } = f16.cachedKV(1);
      expect(k.length).toBe(prompt.length * config.numKvHeads * config.headDim);
      expect(Array.from(k.subarray(0, 16))).toEqual(Array.from(k.subarray(0, 16)).map(roundF16));
      expect(Array.from(v.subarray(0, 16))).toEqual(Array.from(v.subarray(0, 16)).map(roundF16));
      const g32 = f32.greedy(prompt, 40, []);
      const g16 = f16.greedy(prompt, 40, []);
      const same = g32.filter((x, i) => x === g16[i]).length;
      expect(same).toBeGreaterThanOrEqual(36);
    });
  }

  it('accepts f16 weights (converted exactly)', () => {
    const w16 = randomWeights(llamaGqa, 3, 'f16');
    const w32 = new Map([...w16].map(([n, t]) => [n, { dtype: 'f32' as const, shape: t.shape, data: Float32Array.from(t.data as Uint16Array, f16Value) }]));
    expect(Array.from(new ReferenceModel(llamaGqa, w16).forward([1, 2, 3]))).toEqual(Array.from(new ReferenceModel(llamaGqa, w32).forward([1, 2, 3])));
  });

  it('stops at EOS and includes it', () => {
    const model = new ReferenceModel(llamaGqa, randomWeights(llamaGqa, 5));
    const free = model.greedy([1, 2, 3], 10, []);
    expect(model.greedy([1, 2, 3], 10, [free[3]])).toEqual(free.slice(0, free.indexOf(free[3]) + 1));
  });

  it('rejects bad weights, tokens and positions with clear errors', () => {
    const weights = randomWeights(llamaGqa, 1);
    const missing = new Map(weights);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => new ReferenceModel(llamaGqa, missing)).toThrow(/missing tensor "model.layers.1.mlp.up_proj.weight" \(expected shape \[80, 48\]\)/);
    const bad = new Map(weights);
    bad.set('model.norm.weight', { dtype: 'f32', shape: [47], data: new Float32Array(47) });
    expect(() => new ReferenceModel(llamaGqa, bad)).toThrow(/"model.norm.weight" has shape \[47\], expected \[48\]/);
    const model = new ReferenceModel(llamaGqa, weights);
    expect(() => model.forward([96])).toThrow(/token id 96 out of range/);
    expect(() => model.forward([])).toThrow(/no tokens/);
    model.forward(new Array(64).fill(1));
    expect(() => model.forward([1])).toThrow(/position 64 exceeds max_position_embeddings 64/);
  });
});

/** Independent binary16 decoder. */
function f16Value(h: number): number {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  const s = h & 0x8000 ? -1 : 1;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}
