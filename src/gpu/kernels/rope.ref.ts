/**
 * CPU oracle for RoPE (HF rotate-half), on a copy of x, in f64 from the same
 * f32 cos/sin table the GPU reads (ropeCosSinTable layout).
 */
export interface RopeRefArgs {
  positions: ArrayLike<number>;
  cosSin: Float32Array;
  numHeads: number;
  headDim: number;
  rowStride: number;
  headOffset: number;
  maxPositions: number;
}

export function ropeRef(x: Float32Array, a: RopeRefArgs): Float32Array {
  const out = Float32Array.from(x);
  const half = a.headDim / 2;
  for (let r = 0; r < a.positions.length; r++) {
    const pos = Math.min(a.positions[r], a.maxPositions - 1);
    for (let h = 0; h < a.numHeads; h++) {
      const o = r * a.rowStride + a.headOffset + h * a.headDim;
      for (let i = 0; i < half; i++) {
        const c = a.cosSin[pos * half + i];
        const s = a.cosSin[(a.maxPositions + pos) * half + i];
        const x1 = x[o + i], x2 = x[o + i + half];
        out[o + i] = x1 * c - x2 * s;
        out[o + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}
