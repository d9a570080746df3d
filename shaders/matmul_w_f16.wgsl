// Weight loaders for matmul.wgsl (appended to it): f16 weights [n, k] packed
// two per u32 (element 2i in the low half, pairs along k), so k is even and
// a row is k/2 words; the math stays f32.
//   w_row(c) / w_vec(base, j): row c as 4-chunks of two words (k % 4 == 0)
//   w_row8(c) / w_pair(base, j): the 8-chunk j of row c in one vec4<u32> load (k % 8 == 0)
//   w_row_any(c) / w_vec_any(base, j) / w_one_any(base, i): any even k, u32 loads
//
// The vec4 paths decode with integer ops, not unpack2x16float: on SwiftShader
// the matmul is bound by instructions, and its unpack2x16float costs ~1.3x the
// whole f32 kernel. A half h whose sign sits at bit 31 and whose 5-bit
// exponent | mantissa sit at bits 27..13 is the f32 with h's bits and exponent
// bias 15 instead of 127, i.e. h * 2^-112; times 2^112 it is h exactly, for
// normals and zero. Neither half is shifted: SwiftShader's JIT turns every
// vector shift (and division) into per-lane scalar code. The low half moves
// up by multiplies; the high half moves down through an exact float add (h4).
// A microbenchmark of the 49152 x 576 head (dawn.node, best of 10 rounds):
// f32 weights 52.5 ms, this decode with an arithmetic shift for the high half
// 49.6, this one 45.5; loads with no decode ~34; the old all-shift decode with
// a division per load 60-68 (other runs). Subnormal halves would be f32
// denormals, which many GPUs flush, so f16 weights are stored with subnormals
// flushed to zero (src/gpu/f16.ts flushF16Subnormals) and the decode is exact
// on every GPU; Inf / NaN halves (never in weights) would decode as finite.

@group(0) @binding(2) var<storage, read> w2: array<vec2<u32>>;  // vec4 path
@group(0) @binding(2) var<storage, read> w8: array<vec4<u32>>;  // 8-chunk path
@group(0) @binding(2) var<storage, read> wu: array<u32>;        // mm_any

const LO_FIELD = vec2<u32>(0x0fffe000u); // exponent | mantissa at bits 27..13
const SIGN = vec2<u32>(0x80000000u);
const HI_FIELD = vec2<u32>(0x7fff0000u); // the high half's exponent | mantissa
const F16_SCALE = 5.192296858534828e33;  // 2^112

// Halves of words a, b as (a.lo, a.hi, b.lo, b.hi).
fn h4(a: u32, b: u32) -> vec4<f32> {
  let u = vec2<u32>(a, b);
  let lo = ((u * 8192u) & LO_FIELD) | ((u * 65536u) & SIGN);  // << 13, << 16
  // the high half's exponent | mantissa, bits 30..16, moved down to 14..0 with no shift: as an
  // i32 it is that field * 2^16, exact in f32, and + 2^39 leaves the field as the mantissa
  let f = bitcast<vec2<u32>>(vec2<f32>(bitcast<vec2<i32>>(u & HI_FIELD)) + 549755813888.0);
  let hi = ((f & vec2<u32>(0x7fffu)) * 8192u) | (u & SIGN);  // << 13
  return bitcast<vec4<f32>>(vec4<u32>(lo.x, hi.x, lo.y, hi.y)) * F16_SCALE;
}

fn w_row(c: u32) -> u32 { return c * (p.k / 4u); }
fn w_vec(base: u32, j: u32) -> vec4<f32> {
  let h = w2[base + j];
  return h4(h.x, h.y);
}
// In vec4<u32> units, so the 8-chunk path indexes without a division (which
// SwiftShader also runs lane by lane: it cost ~15 % of this kernel).
fn w_row8(c: u32) -> u32 { return c * (p.k / 8u); }
fn w_pair(base: u32, j: u32) -> Pair {
  let u = w8[base + j];
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
