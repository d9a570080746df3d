import type { Gpu } from '../gpu/context.ts';
import { uploadBuffer } from '../gpu/buffers.ts';
import { packF16, f16BitsToF32, flushF16Subnormals } from '../gpu/f16.ts';
import type { MatmulDtype, WeightDtype } from '../gpu/kernels/matmul.ts';
import { quantize, type QuantFormat } from '../gpu/quantize.ts';
import type { ModelConfig } from './config.ts';
import type { CpuTensor } from './weights-cpu.ts';

/**
 * A Llama-family model's weights on the GPU. Linear weights keep Hugging
 * Face's [out, in] layout; q/k/v are fused into one [q; k; v] matrix and
 * gate/up into one [gate; up] matrix so each is a single matmul per layer.
 * Norm weights and biases stay f32; linear weights are f32 or packed f16,
 * or — with q8 / q4 — the layers' matrices are block-quantized at upload
 * (src/gpu/quantize.ts) while the embedding table and the LM head stay f16
 * (a gather reads single rows of the table, and the head is tied to it in
 * most small models; f32 when the hidden size is odd).
 */
export interface LayerWeights {
  inputNorm: GPUBuffer; //  f32 [hidden]
  qkv: GPUBuffer; //        [(numHeads + 2*numKvHeads) * headDim, hidden]
  qkvBias: GPUBuffer | null; // f32 [(numHeads + 2*numKvHeads) * headDim]
  o: GPUBuffer; //          [hidden, numHeads * headDim]
  postNorm: GPUBuffer; //   f32 [hidden]
  gateUp: GPUBuffer; //     [2 * intermediate, hidden]
  down: GPUBuffer; //       [hidden, intermediate]
}

export interface ModelWeights {
  /** The embedding table's and the LM head's dtype. */
  dtype: WeightDtype;
  /** The layers' matrices' (qkv, o, gateUp, down): `dtype`, or q8 / q4 with `scales`. */
  matrixDtype: MatmulDtype;
  /** Block scales of each quantized matrix buffer. */
  scales: Map<GPUBuffer, GPUBuffer>;
  /** Parameters and GPU bytes (codes + scales) of the layers' matrices: bytes per parameter = their ratio. */
  matrixParams: number;
  matrixBytes: number;
  embed: GPUBuffer; //      [vocab, hidden]
  layers: LayerWeights[];
  finalNorm: GPUBuffer; //  f32 [hidden]
  lmHead: GPUBuffer; //     [vocab, hidden]; the embed buffer itself when tied
  bytes: number;
}

export function uploadWeights(gpu: Gpu, config: ModelConfig, cpu: Map<string, CpuTensor>, matrixDtype: MatmulDtype): ModelWeights {
  const get = (name: string): CpuTensor => {
    const t = cpu.get(name);
    if (!t) throw new Error(`weight '${name}' is missing from the model files`);
    return t;
  };
  const quant = matrixDtype === 'q8' || matrixDtype === 'q4' ? matrixDtype : null;
  const dtype: WeightDtype = quant ? (config.hiddenSize % 2 === 0 ? 'f16' : 'f32') : (matrixDtype as WeightDtype);
  const scales = new Map<GPUBuffer, GPUBuffer>();
  let matrixParams = 0, matrixBytes = 0;
  const matrix = (label: string, ...names: string[]): GPUBuffer => {
    const parts = names.map(get);
    matrixParams += parts.reduce((n, t) => n + t.data.length, 0);
    if (!quant) {
      const b = upload(gpu, label, parts, dtype);
      matrixBytes += b.size;
      return b;
    }
    const q = quantizeParts(quant, parts, label);
    const b = uploadBuffer(gpu, label, q.words);
    const sb = uploadBuffer(gpu, `${label}.scales`, q.scales);
    scales.set(b, sb);
    matrixBytes += b.size + sb.size;
    return b;
  };
  const linear = (label: string, ...names: string[]): GPUBuffer => upload(gpu, label, names.map(get), dtype);
  const vector = (label: string, ...names: string[]): GPUBuffer => upload(gpu, label, names.map(get), 'f32');

  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    const attn = `${p}.self_attn`;
    layers.push({
      inputNorm: vector(`w:l${i}.input_norm`, `${p}.input_layernorm.weight`),
      qkv: matrix(`w:l${i}.qkv`, `${attn}.q_proj.weight`, `${attn}.k_proj.weight`, `${attn}.v_proj.weight`),
      qkvBias: config.attentionBias ? vector(`w:l${i}.qkv_bias`, `${attn}.q_proj.bias`, `${attn}.k_proj.bias`, `${attn}.v_proj.bias`) : null,
      o: matrix(`w:l${i}.o`, `${attn}.o_proj.weight`),
      postNorm: vector(`w:l${i}.post_norm`, `${p}.post_attention_layernorm.weight`),
      gateUp: matrix(`w:l${i}.gate_up`, `${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`),
      down: matrix(`w:l${i}.down`, `${p}.mlp.down_proj.weight`),
    });
  }
  const embed = linear('w:embed', 'model.embed_tokens.weight');
  const lmHead = config.tieWordEmbeddings ? embed : linear('w:lm_head', 'lm_head.weight');
  const finalNorm = vector('w:final_norm', 'model.norm.weight');
  const w = { dtype, matrixDtype, scales, matrixParams, matrixBytes, embed, layers, finalNorm, lmHead, bytes: 0 };
  w.bytes = [...weightBuffers(w)].reduce((n, b) => n + b.size, 0);
  return w;
}

export function destroyWeights(gpu: Gpu, w: ModelWeights): void {
  weightBuffers(w).forEach((b) => gpu.destroyBuffer(b));
}

/** Each buffer once (a tied head is the embedding). */
function weightBuffers(w: ModelWeights): Set<GPUBuffer> {
  const all = new Set<GPUBuffer>([w.embed, w.lmHead, w.finalNorm]);
  for (const l of w.layers) {
    for (const b of [l.inputNorm, l.qkv, l.qkvBias, l.o, l.postNorm, l.gateUp, l.down]) if (b) all.add(b);
  }
  for (const s of w.scales.values()) all.add(s);
  return all;
}

/** Row-concatenated [rows, k] tensors (one fused matrix) quantized as one. */
function quantizeParts(format: QuantFormat, parts: CpuTensor[], label: string) {
  const k = parts[0].shape[parts[0].shape.length - 1];
  if (parts.some((t) => t.shape.length !== 2 || t.shape[1] !== k)) throw new Error(`${label}: the fused matrices must be 2-D with the same columns to quantize`);
  const rows = parts.reduce((n, t) => n + t.shape[0], 0);
  const f32 = new Float32Array(rows * k);
  let off = 0;
  for (const t of parts) {
    f32.set(t.dtype === 'f32' ? (t.data as Float32Array) : f16ToF32(t.data as Uint16Array), off);
    off += t.data.length;
  }
  return quantize(format, f32, rows, k);
}

/** Concatenates tensors along their first dim (row-major), converting to the target dtype. */
function upload(gpu: Gpu, label: string, parts: CpuTensor[], dtype: WeightDtype): GPUBuffer {
  const total = parts.reduce((n, t) => n + t.data.length, 0);
  if (dtype === 'f16') {
    const bits = new Uint16Array(total + (total % 2));
    let off = 0;
    for (const t of parts) {
      bits.set(t.dtype === 'f16' ? (t.data as Uint16Array) : f16Bits(t.data as Float32Array), off);
      off += t.data.length;
    }
    flushF16Subnormals(bits); // the matmul's f16 loader expects it (src/gpu/f16.ts); a no-op on what the loader flushed
    return uploadBuffer(gpu, label, new Uint32Array(bits.buffer));
  }
  const f32 = new Float32Array(total);
  let off = 0;
  for (const t of parts) {
    f32.set(t.dtype === 'f32' ? (t.data as Float32Array) : f16ToF32(t.data as Uint16Array), off);
    off += t.data.length;
  }
  return uploadBuffer(gpu, label, f32);
}

function f16Bits(a: Float32Array): Uint16Array {
  const packed = packF16(a.length % 2 ? padOne(a) : a);
  return new Uint16Array(packed.buffer, 0, a.length);
}

function padOne(a: Float32Array): Float32Array {
  const p = new Float32Array(a.length + 1);
  p.set(a);
  return p;
}

function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16BitsToF32(bits[i]);
  return out;
}
