// Weight loaders for matmul.wgsl (appended to it): f16 weights [n, k] packed
// two per u32 (element 2i in the low half, pairs along k), so k is even and
// a row is k/2 words; the math stays f32.
//   w_row(c) / w_vec(base, j): row c as 4-chunks of two words (k % 4 == 0)
//   w_pair(base, j): the 8-chunk j of that row in one vec4<u32> load (k % 8 == 0)
//   w_row_any(c) / w_vec_any(base, j) / w_one_any(base, i): any even k, u32 loads
//
// The vec4 paths decode with integer ops, not unpack2x16float: on SwiftShader
// the matmul is bound by instructions, and its unpack2x16float costs ~1.3x the
// whole f32 kernel. A half h placed in a word's top 16 bits, shifted right by
// 3 (arithmetic) and masked to sign | 5-bit exponent | mantissa, is the f32
// with h's bits and exponent bias 15 instead of 127, i.e. h * 2^-112; times
// 2^112 it is h exactly, for normals and zero. Subnormal halves would be f32
// denormals, which many GPUs flush, so f16 weights are stored with subnormals
// flushed to zero (src/gpu/f16.ts flushF16Subnormals) and the decode is exact
// on every GPU; Inf / NaN halves (never in weights) would decode as finite.

@group(0) @binding(2) var<storage, read> w2: array<vec2<u32>>;  // vec4 path
@group(0) @binding(2) var<storage, read> w8: array<vec4<u32>>;  // 8-chunk path
@group(0) @binding(2) var<storage, read> wu: array<u32>;        // mm_any

const F16_MASK = vec4<i32>(-1879056384); // 0x8fffe000
const F16_SCALE = 5.192296858534828e33;  // 2^112

// Halves of words a, b as (a.lo, a.hi, b.lo, b.hi).
fn h4(a: u32, b: u32) -> vec4<f32> {
  let v = bitcast<vec4<i32>>(vec4<u32>(a << 16u, a, b << 16u, b)) >> vec4<u32>(3u);
  return bitcast<vec4<f32>>(v & F16_MASK) * F16_SCALE;
}

fn w_row(c: u32) -> u32 { return c * (p.k / 4u); }
fn w_vec(base: u32, j: u32) -> vec4<f32> {
  let h = w2[base + j];
  return h4(h.x, h.y);
}
fn w_pair(base: u32, j: u32) -> Pair {
  let u = w8[base / 2u + j];
  return Pair(h4(u.x, u.y), h4(u.z, u.w));
}

fn w_row_any(c: u32) -> u32 { return c * (p.k / 2u); }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> {
  let o = base + 2u * j;
  return vec4<f32>(unpack2x16float(wu[o]), unpack2x16float(wu[o + 1u]));
}
fn w_one_any(base: u32, i: u32) -> f32 {
  let h = unpack2x16float(wu[base + i / 2u]);
  return select(h.x, h.y, (i & 1u) == 1u);
}
