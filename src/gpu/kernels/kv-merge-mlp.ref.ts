/**
 * Reference CCM merge (kv_merge_mlp) on values: `rows(t, half, h)` gives
 * token t's K (half 0) or V (half 1) of kv head h (headDim values). Returns
 * f32 [groups][K|V][kvHead][headDim], summing in the kernel's order (bias
 * first, then index order) with f32 rounding at each step.
 */
export function kvMergeMlpRef(
  rows: (t: number, half: 0 | 1, h: number) => ArrayLike<number>,
  weights: Float32Array,
  o: { numKvHeads: number; headDim: number; factor: number; groups: number; start: number },
): Float32Array {
  const { numKvHeads: H, headDim: hd, factor, groups, start } = o;
  const xn = factor * hd;
  const perHalf = hd * xn + hd + 2 * (hd * hd + hd);
  const out = new Float32Array(groups * 2 * H * hd);
  const f = Math.fround;
  const linear = (w: number, nIn: number, x: ArrayLike<number>, relu: boolean): Float32Array => {
    const y = new Float32Array(hd);
    for (let j = 0; j < hd; j++) {
      let a = weights[w + hd * nIn + j];
      for (let i = 0; i < nIn; i++) a = f(a + f(weights[w + j * nIn + i] * x[i]));
      y[j] = relu ? Math.max(a, 0) : a;
    }
    return y;
  };
  for (let g = 0; g < groups; g++) {
    for (const half of [0, 1] as const) {
      for (let h = 0; h < H; h++) {
        const x = new Float32Array(xn);
        for (let r = 0; r < factor; r++) x.set(rows(start + g * factor + r, half, h), r * hd);
        const base = half * perHalf;
        const w2 = base + hd * xn + hd;
        const w3 = w2 + hd * hd + hd;
        const y = linear(w3, hd, linear(w2, hd, linear(base, xn, x, true), true), false);
        out.set(y, ((g * 2 + half) * H + h) * hd);
      }
    }
  }
  return out;
}
