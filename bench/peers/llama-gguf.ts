/**
 * A Hugging Face Llama checkpoint as llama.cpp's GGUF, f32: the same weights
 * the engine loads, for the peers benchmark's wllama runs.
 *
 * Two things differ from the safetensors layout. Tensor names are ggml's
 * (token_embd, blk.N.attn_q, …; a tied head is simply absent). And llama.cpp's
 * "llama" architecture rotates adjacent pairs (RoPE "norm" type) where
 * Hugging Face rotates the two halves of each head, so the q and k rows of
 * every head are reordered (h, s, j) → (h, j, s) — what llama.cpp's own
 * converter does — which gives the same attention scores.
 */
import type { ModelConfig } from '../../src/model/config.ts';
import type { ParsedSafetensors } from '../../src/model/safetensors.ts';
import { tensorToF32 } from '../../src/model/safetensors.ts';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensor } from '../../src/model/weights-cpu.ts';
import { codepointPieces } from './codepoint-vocab.ts';
import { GGML_TYPE, writeGguf, type GgufTensor, type GgufValue } from './gguf-writer.ts';

/** The vocabulary stored in the file (llama.cpp needs one to load; the benchmark feeds token ids). */
export interface GgufVocab {
  tokens: string[];
  /** 1 normal, 2 unknown (llama.cpp's token types). */
  types: number[];
  bos: number;
  eos: number;
  unk: number;
}

const LAYER_TENSORS: [hf: string, ggml: string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
];

export function llamaGguf(name: string, config: ModelConfig, file: Uint8Array, parsed: ParsedSafetensors, vocab: GgufVocab): Uint8Array[] {
  if (config.architecture !== 'llama' || config.attentionBias || config.ropeScaling) {
    throw new Error(`${name}: this writer takes plain Llama checkpoints (no attention bias, no RoPE scaling)`);
  }
  if (vocab.tokens.length !== config.vocabSize) throw new Error(`${name}: ${vocab.tokens.length} tokens for a vocabulary of ${config.vocabSize}`);
  const get = (hfName: string): Float32Array => {
    const info = parsed.tensors.get(hfName);
    if (!info) throw new Error(`${name}: model.safetensors has no tensor ${hfName}`);
    return tensorToF32(file, info, parsed.dataOffset);
  };
  const tensor = (ggml: string, values: Float32Array, shape: number[]): GgufTensor =>
    ({ name: ggml, shape, type: GGML_TYPE.F32, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
  const h = config.hiddenSize;
  const tensors: GgufTensor[] = [tensor('token_embd.weight', get(EMBED), [config.vocabSize, h])];
  if (!config.tieWordEmbeddings) tensors.push(tensor('output.weight', get(LM_HEAD), [config.vocabSize, h]));
  tensors.push(tensor('output_norm.weight', get(FINAL_NORM), [h]));
  for (let l = 0; l < config.numLayers; l++) {
    for (const [hf, ggml] of LAYER_TENSORS) {
      const info = parsed.tensors.get(layerTensor(l, hf));
      let values = get(layerTensor(l, hf));
      if (hf === 'self_attn.q_proj.weight') values = pairRotaryRows(values, config.numHeads, config.headDim, h);
      if (hf === 'self_attn.k_proj.weight') values = pairRotaryRows(values, config.numKvHeads, config.headDim, h);
      tensors.push(tensor(`blk.${l}.${ggml}`, values, info!.shape));
    }
  }
  return writeGguf(metadata(name, config, vocab), tensors);
}

/** Rows of each head reordered from halves (s·hd/2 + j) to pairs (2j + s). */
export function pairRotaryRows(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let hd = 0; hd < heads; hd++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < half; j++) {
        const from = (hd * headDim + s * half + j) * cols;
        out.set(w.subarray(from, from + cols), (hd * headDim + 2 * j + s) * cols);
      }
    }
  }
  return out;
}

function metadata(name: string, c: ModelConfig, vocab: GgufVocab): Record<string, GgufValue> {
  return {
    'general.architecture': { string: 'llama' },
    'general.name': { string: name },
    'general.alignment': { u32: 32 },
    'llama.context_length': { u32: c.maxPositions },
    'llama.embedding_length': { u32: c.hiddenSize },
    'llama.block_count': { u32: c.numLayers },
    'llama.feed_forward_length': { u32: c.intermediateSize },
    'llama.attention.head_count': { u32: c.numHeads },
    'llama.attention.head_count_kv': { u32: c.numKvHeads },
    'llama.attention.key_length': { u32: c.headDim },
    'llama.attention.value_length': { u32: c.headDim },
    'llama.rope.dimension_count': { u32: c.headDim },
    'llama.rope.freq_base': { f32: c.ropeTheta },
    'llama.attention.layer_norm_rms_epsilon': { f32: c.rmsNormEps },
    'llama.vocab_size': { u32: c.vocabSize },
    'tokenizer.ggml.model': { string: 'llama' },
    'tokenizer.ggml.tokens': { strings: vocab.tokens },
    'tokenizer.ggml.scores': { f32s: vocab.tokens.map((_, i) => -i) },
    'tokenizer.ggml.token_type': { i32s: vocab.types },
    'tokenizer.ggml.bos_token_id': { u32: vocab.bos },
    'tokenizer.ggml.eos_token_id': { u32: vocab.eos },
    'tokenizer.ggml.unknown_token_id': { u32: vocab.unk },
    'tokenizer.ggml.add_bos_token': { bool: false },
    'tokenizer.ggml.add_eos_token': { bool: false },
    // the prompt text is the tokens' characters, nothing before them
    'tokenizer.ggml.add_space_prefix': { bool: false },
  };
}

/** The GGUF vocabulary of bench/peers/codepoint-vocab.ts: <unk> (id 0, also end of sequence), then one character per token. */
export function codepointVocab(size: number): GgufVocab {
  const tokens = codepointPieces(size);
  return { tokens, types: tokens.map((_, i) => (i === 0 ? 2 : 1)), unk: 0, bos: 1, eos: 0 };
}
