// GELU activation, elementwise: out[i] = gelu(x[i]) for i < n.
//
//   TANH = 0 (exact; torch.nn.GELU(), HF "gelu"):
//     gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
//   TANH = 1 (HF "gelu_pytorch_tanh" / "gelu_new"):
//     gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//
// WGSL has no erf. erfc(z), z >= 0, uses the Chebyshev fit of Numerical
// Recipes (erfcc, 2nd ed. section 6.2), fractional error < 1.2e-7 for every
// z >= 0:
//   t = 1 / (1 + z/2),  erfc(z) = t exp(-z^2 + P(t)),  P a degree-9 polynomial.
// Negative x take gelu = 0.5 x erfc(|x|/sqrt 2) directly, so the tiny left tail
// keeps its relative accuracy instead of cancelling in 1 + erf; positive x take
// x (1 - erfc/2). z is clamped to 14, where exp(-z^2) = e^-196 underflows to 0
// in f32, so gelu(x) is exactly x for x > 19.8 and -0 for x < -19.8 (true
// values differ from those by less than 1e-80 |x|).
//
// The tanh form is evaluated as 0.5 (1 + tanh(u)) = sigmoid(2u), in the stable
// form e = exp(-2|u|) <= 1, sigmoid = 1/(1+e) for u >= 0 and e/(1+e) for u < 0:
// no tanh to overflow, exp never overflows, and no cancellation for negative
// x. u is computed from x clamped to [-20, 20] (no x^3 overflow); there
// e = e^-602 underflows to 0, so gelu is exactly x or -0 beyond, as above.
//
// One element per thread. Dispatch: ceil(n / WG) workgroups, 1-D (split over
// x/y by `grid()`).

struct Params { n: u32 }

override WG: u32 = 256;
override TANH: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const FRAC_1_SQRT_2: f32 = 0.7071067811865476;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// erfc(z) for z >= 0 (Numerical Recipes erfcc), relative error < 1.2e-7.
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
             t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
             t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(poly - z * z);
}

fn gelu_erf(v: f32) -> f32 {
  let z = min(abs(v) * FRAC_1_SQRT_2, 14.0);
  let c = erfc_pos(z);
  if (v < 0.0) { return 0.5 * v * c; }
  return v - 0.5 * v * c;
}

fn gelu_tanh(v: f32) -> f32 {
  let w = clamp(v, -20.0, 20.0);
  let u = SQRT_2_OVER_PI * (w + 0.044715 * w * w * w);
  let e = exp(-2.0 * abs(u));
  let s = select(e, 1.0, u >= 0.0) / (1.0 + e);
  return v * s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.n) { return; }
  let v = x[i];
  if (TANH != 0u) {
    out[i] = gelu_tanh(v);
  } else {
    out[i] = gelu_erf(v);
  }
}
