/**
 * CPU oracle for matmul:
 *   out[r, c] = initial[r, c] + sum_i x[r, i] * w[c, i] + bias[c]
 * accumulated in f64, rounded once to f32. `w` holds the weight values
 * (for f16 weights pass the f16-rounded values, `roundToF16` in f16.ts).
 */
export function matmulRef(
  x: Float32Array, w: Float32Array, m: number, n: number, k: number,
  bias?: Float32Array, initial?: Float32Array,
): Float32Array {
  return product(x, w, m, n, k, bias, initial, (v) => v);
}

/** The same sum over magnitudes, sum_i |x w| + |bias| + |initial|: the scale of the rounding error. */
export function matmulAbsRef(
  x: Float32Array, w: Float32Array, m: number, n: number, k: number,
  bias?: Float32Array, initial?: Float32Array,
): Float64Array {
  return Float64Array.from(product(x, w, m, n, k, bias, initial, Math.abs));
}

function product(
  x: Float32Array, w: Float32Array, m: number, n: number, k: number,
  bias: Float32Array | undefined, initial: Float32Array | undefined, f: (v: number) => number,
): Float32Array {
  const out = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += f(x[r * k + i] * w[c * k + i]);
      if (bias) s += f(bias[c]);
      if (initial) s += f(initial[r * n + c]);
      out[r * n + c] = s;
    }
  }
  return out;
}
