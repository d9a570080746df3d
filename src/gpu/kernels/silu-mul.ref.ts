/** CPU oracle for SwiGLU: out[r, j] = silu(gateUp[r, j]) * gateUp[r, f + j], silu(g) = g / (1 + e^-g), in f64. */
export function siluMulRef(gateUp: Float32Array, n: number, f: number): Float32Array {
  const out = new Float32Array(n * f);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < f; j++) {
      const g = gateUp[r * 2 * f + j];
      out[r * f + j] = (g / (1 + Math.exp(-g))) * gateUp[r * 2 * f + f + j];
    }
  }
  return out;
}
