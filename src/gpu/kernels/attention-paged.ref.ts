import { roundF16 } from './kv-write.ref.ts';
import type { KvDtype } from '../kv-layout.ts';

/** One sequence's cache, contiguous: K and V as [token][kvHead][headDim]. */
export interface RefSequence {
  k: Float32Array;
  v: Float32Array;
}

export interface AttentionPagedRefArgs {
  q: Float32Array;
  qRowStride: number;
  qOffset: number;
  seqs: readonly RefSequence[];
  /** Per query row: its sequence (index into seqs) and absolute position; it attends to keys 0..pos. */
  rows: readonly { seq: number; pos: number }[];
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** 'f16': K and V are rounded to f16 on read, as the pool stores them. */
  dtype: KvDtype;
  scale?: number;
}

/**
 * Reference causal GQA attention over contiguous per-sequence K/V, f64
 * accumulation, exact two-pass softmax. Returns f32 [row][numHeads][headDim].
 */
export function attentionPagedRef(a: AttentionPagedRefArgs): Float32Array {
  const { numHeads, numKvHeads, headDim: D } = a;
  const scale = a.scale ?? 1 / Math.sqrt(D);
  const group = numHeads / numKvHeads;
  const rd = a.dtype === 'f16' ? roundF16 : (x: number) => x;
  const out = new Float32Array(a.rows.length * numHeads * D);
  a.rows.forEach(({ seq, pos }, r) => {
    const { k, v } = a.seqs[seq];
    for (let h = 0; h < numHeads; h++) {
      const g = Math.floor(h / group);
      const qb = r * a.qRowStride + a.qOffset + h * D;
      const s = new Float64Array(pos + 1);
      let max = -Infinity;
      for (let j = 0; j <= pos; j++) {
        const kb = (j * numKvHeads + g) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += a.q[qb + d] * rd(k[kb + d]);
        s[j] = dot * scale;
        max = Math.max(max, s[j]);
      }
      let sum = 0;
      for (let j = 0; j <= pos; j++) sum += (s[j] = Math.exp(s[j] - max));
      const acc = new Float64Array(D);
      for (let j = 0; j <= pos; j++) {
        const vb = (j * numKvHeads + g) * D;
        for (let d = 0; d < D; d++) acc[d] += (s[j] / sum) * rd(v[vb + d]);
      }
      out.set(acc, (r * numHeads + h) * D);
    }
  });
  return out;
}
