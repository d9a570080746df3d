/**
 * CPU oracle for GELU, in f64:
 *   'none': gelu(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
 *   'tanh': gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 */
import type { GeluApproximate } from './gelu.ts';

export function geluRef(x: Float32Array, approximate: GeluApproximate = 'none'): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = approximate === 'tanh' ? geluTanh64(x[i]) : geluErf64(x[i]);
  return out;
}

export function geluErf64(x: number): number {
  return 0.5 * x * erfc64(-x / Math.SQRT2);
}

/** 0.5 (1 + tanh(u)) is computed as sigmoid(2u), stably: 1 + tanh(u) cancels in f64 too for u < -18. */
export function geluTanh64(x: number): number {
  const u = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);
  const e = Math.exp(-2 * Math.abs(u));
  return (x * (u >= 0 ? 1 : e)) / (1 + e);
}

/**
 * erfc in f64, relative error ~1e-14 or better. |z| < 3: erf from the
 * all-positive series erf(z) = 2/sqrt(pi) e^{-z^2} sum_k 2^k z^{2k+1} / (1*3*...*(2k+1)),
 * no cancellation. z >= 3: the continued fraction
 * erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + (2/2)/(z + (3/2)/(z + ...)))), evaluated backwards.
 */
export function erfc64(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (z < 0) return 2 - erfc64(-z);
  if (z >= 3) {
    if (z > 27) return 0;
    let k = z;
    for (let j = 200; j >= 1; j--) k = z + j / 2 / k;
    return Math.exp(-z * z) / Math.sqrt(Math.PI) / k;
  }
  let term = z, sum = z;
  for (let k = 1; k < 200 && term > 1e-17 * sum; k++) {
    term *= (2 * z * z) / (2 * k + 1);
    sum += term;
  }
  return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum;
}
