/**
 * How the stored tier writes a page's bytes: 'pool' keeps the pool's own
 * format (lossless); 'int8' keeps 8 bits per value with one f32 scale per
 * (layer, K/V, KV head) of the page — CacheGen's quantization idea without
 * its arithmetic coder. Lossy: a page read back differs from the one
 * written by at most half a quantization step (scale = max |x| / 127) per
 * value, so outputs may change; non-finite values are stored as 0.
 *
 *   int8 page: [scales f32: L·2·H][values i8: L·2·H·S·D]   (L layers, H KV heads, S slots, D head dim)
 */
import { decodeKvPage, encodeKvPage, kvPageBytes, type KvGeometry } from '../../gpu/kv-layout.ts';

export type StoreCodec = 'pool' | 'int8';

export interface CodecGeometry extends KvGeometry {
  numLayers: number;
}

/** Bytes a page takes in `codec`. */
export function storedBytes(g: CodecGeometry, codec: StoreCodec): number {
  const groups = g.numLayers * 2 * g.numKvHeads;
  return codec === 'pool' ? g.numLayers * kvPageBytes(g) : groups * 4 + groups * g.pageSize * g.headDim;
}

/** A page in the pool's format over every layer → its stored bytes. */
export function encodeStoredPage(g: CodecGeometry, codec: StoreCodec, pool: ArrayBuffer): ArrayBuffer {
  if (codec === 'pool') return pool;
  const layerBytes = kvPageBytes(g);
  const groupElems = g.pageSize * g.headDim;
  const groups = g.numLayers * 2 * g.numKvHeads;
  const out = new ArrayBuffer(storedBytes(g, 'int8'));
  const scales = new Float32Array(out, 0, groups);
  const q = new Int8Array(out, groups * 4);
  for (let l = 0; l < g.numLayers; l++) {
    const { k, v } = decodeKvPage(g, new Uint32Array(pool, l * layerBytes, layerBytes / 4));
    [k, v].forEach((half, kv) => {
      for (let h = 0; h < g.numKvHeads; h++) {
        const group = (l * 2 + kv) * g.numKvHeads + h;
        const xs = half.subarray(h * groupElems, (h + 1) * groupElems);
        let max = 0;
        for (const x of xs) if (Number.isFinite(x)) max = Math.max(max, Math.abs(x));
        const scale = max / 127;
        scales[group] = scale;
        for (let i = 0; i < xs.length; i++) q[group * groupElems + i] = scale > 0 && Number.isFinite(xs[i]) ? Math.round(xs[i] / scale) : 0;
      }
    });
  }
  return out;
}

/** Stored bytes → the page in the pool's format over every layer. */
export function decodeStoredPage(g: CodecGeometry, codec: StoreCodec, stored: ArrayBuffer): ArrayBuffer {
  if (codec === 'pool') return stored;
  const layerBytes = kvPageBytes(g);
  const groupElems = g.pageSize * g.headDim;
  const groups = g.numLayers * 2 * g.numKvHeads;
  const scales = new Float32Array(stored, 0, groups);
  const q = new Int8Array(stored, groups * 4);
  const out = new Uint8Array(g.numLayers * layerBytes);
  for (let l = 0; l < g.numLayers; l++) {
    const halves = [0, 1].map((kv) => {
      const a = new Float32Array(g.numKvHeads * groupElems);
      for (let h = 0; h < g.numKvHeads; h++) {
        const group = (l * 2 + kv) * g.numKvHeads + h;
        for (let i = 0; i < groupElems; i++) a[h * groupElems + i] = q[group * groupElems + i] * scales[group];
      }
      return a;
    });
    out.set(new Uint8Array(encodeKvPage(g, halves[0], halves[1]).buffer), l * layerBytes);
  }
  return out.buffer;
}
