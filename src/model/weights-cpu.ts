/**
 * Weights in CPU memory, the tensor names a config implies, and f16 / bf16 conversions.
 *
 * f16 values are kept as their raw IEEE binary16 bits in a Uint16Array (Node 20 has no
 * Float16Array); that is also the layout the GPU packs two per u32.
 */
import type { ModelConfig } from './config.ts';

export interface CpuTensor {
  dtype: 'f32' | 'f16';
  shape: number[];
  /** Row-major values; for 'f16' the binary16 bit patterns. */
  data: Float32Array | Uint16Array;
}

// ---------------------------------------------------------------------------------------------
// Tensor names (Hugging Face layout)
// ---------------------------------------------------------------------------------------------

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/** Name of a per-layer tensor, e.g. layerTensor(3, 'self_attn.q_proj.weight'). */
export function layerTensor(layer: number, suffix: string): string {
  return `model.layers.${layer}.${suffix}`;
}

/**
 * Every tensor the config requires, with its shape ([out, in] for linear weights).
 * Tied embeddings → no lm_head. q/k/v biases when config.attentionBias.
 */
export function expectedTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: f, numHeads, numKvHeads, headDim, vocabSize } = config;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const m = new Map<string, number[]>();
  m.set(EMBED, [vocabSize, h]);
  for (let i = 0; i < config.numLayers; i++) {
    m.set(layerTensor(i, 'input_layernorm.weight'), [h]);
    m.set(layerTensor(i, 'self_attn.q_proj.weight'), [q, h]);
    m.set(layerTensor(i, 'self_attn.k_proj.weight'), [kv, h]);
    m.set(layerTensor(i, 'self_attn.v_proj.weight'), [kv, h]);
    if (config.attentionBias) {
      m.set(layerTensor(i, 'self_attn.q_proj.bias'), [q]);
      m.set(layerTensor(i, 'self_attn.k_proj.bias'), [kv]);
      m.set(layerTensor(i, 'self_attn.v_proj.bias'), [kv]);
    }
    m.set(layerTensor(i, 'self_attn.o_proj.weight'), [h, q]);
    m.set(layerTensor(i, 'post_attention_layernorm.weight'), [h]);
    m.set(layerTensor(i, 'mlp.gate_proj.weight'), [f, h]);
    m.set(layerTensor(i, 'mlp.up_proj.weight'), [f, h]);
    m.set(layerTensor(i, 'mlp.down_proj.weight'), [h, f]);
  }
  m.set(FINAL_NORM, [h]);
  if (!config.tieWordEmbeddings) m.set(LM_HEAD, [vocabSize, h]);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
let f16Table: Float32Array | null = null;

/** IEEE binary16 bits → number (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** number → IEEE binary16 bits, rounding f32(x) to nearest, ties to even (as GPUs' pack2x16float). */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is correct, up to Inf
  return sign | h;
}

/** x rounded to the nearest f16 value (returned as a number). */
export function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/** Binary16 bit array → Float32Array. */
export function f16ArrayToF32(bits: Uint16Array): Float32Array {
  const table = (f16Table ??= buildF16Table());
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Float32Array → binary16 bits (round to nearest even; overflow → ±Inf). */
export function f32ArrayToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return out;
}

/** bfloat16 bits → Float32Array (exact: bf16 is the top half of an f32). */
export function bf16ArrayToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

/** Float32Array → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ArrayToBf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = u[i];
    if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) out[i] = (b >>> 16) | 0x40;
    else out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** The tensor's values as f32 (a new array for f16, the same array for f32). */
export function toF32(t: CpuTensor): Float32Array {
  return t.dtype === 'f32' ? (t.data as Float32Array) : f16ArrayToF32(t.data as Uint16Array);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = f16BitsToF32(i);
  return t;
}
