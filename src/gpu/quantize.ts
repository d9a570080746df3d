/**
 * Block quantization of a weight matrix [n, k] (row-major, Hugging Face's
 * Linear [out, in]) for the q8 / q4 matmul loaders (shaders/matmul_w_q8.wgsl,
 * matmul_w_q4.wgsl), and its exact inverse for references. Blocks of 32
 * along k, one f32 scale each, symmetric:
 *
 *   q8: scale = max|w| / 127, q = round(w / scale) in -127..127, stored int8, four per u32
 *   q4: scale = max|w| / 7,   q = round(w / scale) in -7..7 (code q + 8, 0 unused), eight per u32
 *
 * (llama.cpp's Q4_0 maps the signed extreme to -8; mapping |max| to 7 keeps
 * the code symmetric and the largest weight exact.) Each row is padded with
 * zeros to kp = 32 · ceil(k / 32), so blocks never straddle rows and any k works.
 */
export type QuantFormat = 'q8' | 'q4';

export const QUANT_BLOCK = 32;

export interface QuantizedMatrix {
  format: QuantFormat;
  n: number;
  k: number;
  /** Packed codes, rows of kp / 4 (q8) or kp / 8 (q4) words. */
  words: Uint32Array;
  /** One per block, [n, kp / 32]. */
  scales: Float32Array;
}

const LEVELS: Record<QuantFormat, number> = { q8: 127, q4: 7 };

/** Values per row after padding. */
export function paddedK(k: number): number {
  return Math.ceil(k / QUANT_BLOCK) * QUANT_BLOCK;
}

/** Bytes of a quantized [n, k] matrix on the GPU (codes + scales). */
export function quantizedBytes(format: QuantFormat, n: number, k: number): number {
  const kp = paddedK(k);
  return n * (kp / (format === 'q8' ? 1 : 2) + (kp / QUANT_BLOCK) * 4);
}

export function quantize(format: QuantFormat, w: Float32Array, n: number, k: number): QuantizedMatrix {
  if (w.length !== n * k) throw new RangeError(`quantize: ${w.length} values for a ${n} × ${k} matrix`);
  const kp = paddedK(k), blocks = kp / QUANT_BLOCK, levels = LEVELS[format];
  const perWord = format === 'q8' ? 4 : 8, bits = 32 / perWord;
  const words = new Uint32Array((n * kp) / perWord);
  const scales = new Float32Array(n * blocks);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * QUANT_BLOCK, end = Math.min(start + QUANT_BLOCK, k);
      let max = 0;
      for (let i = start; i < end; i++) max = Math.max(max, Math.abs(w[r * k + i]));
      const scale = Math.fround(max / levels);
      scales[r * blocks + b] = scale;
      for (let i = start; i < end; i++) {
        const q = scale > 0 ? Math.max(-levels, Math.min(levels, Math.round(w[r * k + i] / scale))) : 0;
        const code = format === 'q8' ? q & 0xff : q + 8;
        const e = r * kp + i;
        words[Math.floor(e / perWord)] |= code << (bits * (e % perWord));
      }
      // padding (i in [k, kp)): code 0 for q8 (= 0), code 8 for q4 (= 0)
      if (format === 'q4') for (let i = end; i < start + QUANT_BLOCK; i++) words[Math.floor((r * kp + i) / 8)] |= 8 << (4 * ((r * kp + i) % 8));
    }
  }
  return { format, n, k, words, scales };
}

/** The values the GPU loaders compute from a quantized matrix, [n, k] f32 (padding dropped). */
export function dequantize(q: QuantizedMatrix): Float32Array {
  const { n, k } = q;
  const kp = paddedK(k), blocks = kp / QUANT_BLOCK;
  const perWord = q.format === 'q8' ? 4 : 8, bits = 32 / perWord;
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < k; i++) {
      const e = r * kp + i;
      const code = (q.words[Math.floor(e / perWord)] >>> (bits * (e % perWord))) & ((1 << bits) - 1);
      const v = q.format === 'q8' ? (code << 24) >> 24 : code - 8;
      out[r * k + i] = Math.fround(v * q.scales[r * blocks + Math.floor(i / QUANT_BLOCK)]);
    }
  }
  return out;
}
