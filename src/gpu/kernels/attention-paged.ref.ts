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
  /**
   * Optional [A, B] pairs per row (rowMask[2r], rowMask[2r+1], the GPU buffer's
   * layout): keys A <= j < B are left out of the softmax. Requires A <= B <= pos.
   */
  rowMask?: ArrayLike<number>;
}

/**
 * Reference causal GQA attention over contiguous per-sequence K/V, f64
 * accumulation, exact two-pass softmax over each row's visible keys
 * (j <= pos, outside its masked [A, B)). Returns f32 [row][numHeads][headDim].
 */
export function attentionPagedRef(a: AttentionPagedRefArgs): Float32Array {
  const { numHeads, numKvHeads, headDim: D } = a;
  const scale = a.scale ?? 1 / Math.sqrt(D);
  const group = numHeads / numKvHeads;
  const rd = a.dtype === 'f16' ? roundF16 : (x: number) => x;
  const out = new Float32Array(a.rows.length * numHeads * D);
  a.rows.forEach(({ seq, pos }, r) => {
    const { k, v } = a.seqs[seq];
    const [mA, mB] = a.rowMask ? [a.rowMask[2 * r], a.rowMask[2 * r + 1]] : [0, 0];
    if (!(Number.isInteger(mA) && Number.isInteger(mB) && 0 <= mA && mA <= mB && mB <= pos)) {
      throw new RangeError(`attentionPagedRef: row ${r} mask [${mA}, ${mB}) must satisfy 0 <= A <= B <= pos = ${pos}`);
    }
    const keys = Array.from({ length: pos + 1 }, (_, j) => j).filter((j) => j < mA || j >= mB);
    for (let h = 0; h < numHeads; h++) {
      const g = Math.floor(h / group);
      const qb = r * a.qRowStride + a.qOffset + h * D;
      const s = new Float64Array(keys.length); // s[i]: score, then weight, of key keys[i]
      let max = -Infinity;
      keys.forEach((j, i) => {
        const kb = (j * numKvHeads + g) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += a.q[qb + d] * rd(k[kb + d]);
        s[i] = dot * scale;
        max = Math.max(max, s[i]);
      });
      let sum = 0;
      for (let i = 0; i < keys.length; i++) sum += (s[i] = Math.exp(s[i] - max));
      const acc = new Float64Array(D);
      keys.forEach((j, i) => {
        const vb = (j * numKvHeads + g) * D;
        for (let d = 0; d < D; d++) acc[d] += (s[i] / sum) * rd(v[vb + d]);
      });
      out.set(acc, (r * numHeads + h) * D);
    }
  });
  return out;
}
