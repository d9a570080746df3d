import { f16BitsToF32, f32ToF16Bits } from '../f16.ts';
import type { KvGeometry } from '../kv-layout.ts';

/** f32 → nearest f16 (ties to even) → f32: what an f16 pool stores. */
export function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/** Elements (not words) of one page in the Float32Array image of the pool: 2*numKvHeads*pageSize*headDim. */
export function kvImagePageElems(g: KvGeometry): number {
  return 2 * g.numKvHeads * g.pageSize * g.headDim;
}

/** Index of element d of (page, K=0|V=1, kv head, offset) in the pool image `[page][kv][head][offset][headDim]`. */
export function kvImageIndex(g: KvGeometry, page: number, kv: 0 | 1, head: number, offset: number, d: number): number {
  return (((page * 2 + kv) * g.numKvHeads + head) * g.pageSize + offset) * g.headDim + d;
}

/**
 * Reference kv_write into a Float32Array image of one layer's pool (values,
 * not packed words: for f16 each value is rounded to f16). Slots past the
 * image are skipped, like the kernel.
 */
export function kvWriteRef(
  image: Float32Array,
  src: Float32Array,
  slots: Uint32Array,
  a: KvGeometry & { n: number; rowStride: number; kOffset: number; vOffset: number },
): void {
  const numPages = Math.floor(image.length / kvImagePageElems(a));
  const round = a.dtype === 'f16' ? roundF16 : (x: number) => x;
  for (let r = 0; r < a.n; r++) {
    const page = Math.floor(slots[r] / a.pageSize);
    const off = slots[r] % a.pageSize;
    if (page >= numPages) continue;
    for (let h = 0; h < a.numKvHeads; h++) {
      for (let d = 0; d < a.headDim; d++) {
        const s = r * a.rowStride + h * a.headDim + d;
        image[kvImageIndex(a, page, 0, h, off, d)] = round(src[s + a.kOffset]);
        image[kvImageIndex(a, page, 1, h, off, d)] = round(src[s + a.vOffset]);
      }
    }
  }
}

/** Decodes the raw words of a pool buffer (as read back) into its Float32Array image. */
export function decodeKvPool(words: ArrayBuffer, g: KvGeometry): Float32Array {
  if (g.dtype === 'f32') return new Float32Array(words.slice(0));
  const u = new Uint32Array(words);
  const out = new Float32Array(u.length * 2);
  for (let i = 0; i < u.length; i++) {
    out[2 * i] = f16BitsToF32(u[i] & 0xffff);
    out[2 * i + 1] = f16BitsToF32(u[i] >>> 16);
  }
  return out;
}

/** Encodes a Float32Array pool image as the words the kernels read (f16: packed pairs along headDim, rounded). */
export function encodeKvPool(image: Float32Array, g: KvGeometry): Uint32Array {
  if (g.dtype === 'f32') return new Uint32Array(image.buffer.slice(image.byteOffset, image.byteOffset + image.byteLength));
  const words = new Uint32Array(image.length / 2);
  for (let i = 0; i < words.length; i++) words[i] = (f32ToF16Bits(image[2 * i]) | (f32ToF16Bits(image[2 * i + 1]) << 16)) >>> 0;
  return words;
}
