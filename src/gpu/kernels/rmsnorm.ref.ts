/** CPU oracle for RMSNorm: out[r, j] = x[r, j] / sqrt(mean(x[r, :]^2) + eps) * weight[j], in f64. */
export function rmsNormRef(x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] * x[r * dim + j];
    const inv = 1 / Math.sqrt(s / dim + eps);
    for (let j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv * weight[j];
  }
  return out;
}
