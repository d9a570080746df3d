import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.ts';

/** stories260K's config.json. */
const stories = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 512, hidden_size: 64, intermediate_size: 172,
  num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 8, max_position_embeddings: 512,
  rms_norm_eps: 1e-5, rope_theta: 10000.0, hidden_act: 'silu', tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
  torch_dtype: 'float32', attention_bias: false, mlp_bias: false,
};

describe('parseConfig', () => {
  it('parses a Llama config', () => {
    expect(parseConfig(stories)).toEqual({
      architecture: 'llama', vocabSize: 512, hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8, numKvHeads: 4,
      headDim: 8, maxPositions: 512, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true, attentionBias: false,
      bosTokenId: 1, eosTokenIds: [2],
    });
  });

  it('fills HF defaults: kv heads, head_dim, eps, theta; Qwen2 always has q/k/v bias', () => {
    const c = parseConfig({
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 100, hidden_size: 32, intermediate_size: 64,
      num_hidden_layers: 2, num_attention_heads: 4, eos_token_id: [5, 7],
    });
    expect(c).toMatchObject({ architecture: 'qwen2', numKvHeads: 4, headDim: 8, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768 });
    expect(c.attentionBias).toBe(true);
    expect(c.tieWordEmbeddings).toBe(false);
    expect(c.eosTokenIds).toEqual([5, 7]);
    expect(c.bosTokenId).toBeUndefined();
  });

  it('reads llama3 rope scaling', () => {
    const c = parseConfig({
      ...stories,
      rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    expect(c.ropeScaling).toEqual({ ropeType: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(parseConfig({ ...stories, rope_scaling: { type: 'linear', factor: 2 } }).ropeScaling).toEqual({ ropeType: 'linear', factor: 2 });
    expect(parseConfig({ ...stories, rope_scaling: null }).ropeScaling).toBeUndefined();
  });

  it('takes the text_config of a VLM (SmolVLM-256M layout)', () => {
    const c = parseConfig({
      architectures: ['Idefics3ForConditionalGeneration'], model_type: 'idefics3', tie_word_embeddings: false, vocab_size: 49280,
      text_config: {
        architectures: ['VLlama3ForCausalLM'], model_type: 'llama', head_dim: 64, hidden_size: 576, intermediate_size: 1536,
        max_position_embeddings: 8192, num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, rms_norm_eps: 1e-5,
        rope_scaling: null, rope_theta: 100000, vocab_size: 49280, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false,
      },
    });
    expect(c).toMatchObject({ architecture: 'llama', hiddenSize: 576, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, vocabSize: 49280, ropeTheta: 100000 });
  });

  it('rejects unsupported architectures, naming them and the supported ones', () => {
    const mistral = { ...stories, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
    expect(() => parseConfig(mistral)).toThrow(/Unsupported architecture.*MistralForCausalLM.*Supported: LlamaForCausalLM.*Qwen2ForCausalLM/);
    const gpt2 = { model_type: 'gpt2', vocab_size: 10 };
    expect(() => parseConfig(gpt2)).toThrow(/Unsupported architecture.*model_type "gpt2"/);
    expect(() => parseConfig({ hidden_size: 8 })).toThrow(/Unsupported architecture/);
  });

  it('names missing and invalid fields', () => {
    const { hidden_size: _h, ...noHidden } = stories;
    expect(() => parseConfig(noHidden)).toThrow(/missing field "hidden_size"/);
    expect(() => parseConfig({ ...stories, num_hidden_layers: 2.5 })).toThrow(/"num_hidden_layers" must be a positive integer/);
    expect(() => parseConfig({ ...stories, rms_norm_eps: 'x' })).toThrow(/"rms_norm_eps" must be a positive number/);
    expect(() => parseConfig({ ...stories, num_key_value_heads: 3 })).toThrow(/multiple of num_key_value_heads/);
    expect(() => parseConfig({ ...stories, hidden_act: 'gelu' })).toThrow(/hidden_act "gelu"/);
    expect(() => parseConfig({ ...stories, eos_token_id: 'x' })).toThrow(/"eos_token_id"/);
    expect(() => parseConfig({ ...stories, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope_scaling type "yarn"/);
    expect(() => parseConfig({ ...stories, rope_scaling: { rope_type: 'llama3', factor: 8 } })).toThrow(/"rope_scaling.low_freq_factor"/);
    expect(() => parseConfig([])).toThrow(/JSON object/);
  });

  it('refuses absurd sizes and prototype names (found by config.fuzz.node.test.ts)', () => {
    expect(() => parseConfig({ ...stories, num_hidden_layers: 1e9 })).toThrow(/field "num_hidden_layers" is 1000000000, above the limit 1024/);
    expect(() => parseConfig({ ...stories, hidden_size: 2 ** 31 })).toThrow(/field "hidden_size" is 2147483648, above the limit 262144/);
    expect(() => parseConfig({ ...stories, vocab_size: 0 })).toThrow(/field "vocab_size" must be a positive integer, got 0/);
    expect(() => parseConfig({ ...stories, rms_norm_eps: NaN })).toThrow(/field "rms_norm_eps" must be a positive number, got NaN/);
    expect(() => parseConfig({ ...stories, eos_token_id: 1e300 })).toThrow(/field "eos_token_id" must be a token id/);
    expect(() => parseConfig({ ...stories, architectures: ['constructor'], model_type: 'toString' })).toThrow(/Unsupported architecture/);
    expect(() => parseConfig({ ...stories, hidden_act: JSON.parse('{"toString":1}') })).toThrow(/hidden_act "\{"toString":1\}" is not supported/);
  });
});
