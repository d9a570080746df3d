/**
 * IEEE 754 half precision on the CPU, bit-exact with WGSL's
 * `pack2x16float` / `unpack2x16float` (Node 20 has no Float16Array).
 *
 * Packed layout used by every f16 buffer in this runtime: two halves per
 * u32, element 2i in the low 16 bits and element 2i+1 in the high 16 bits
 * (little end first), pairs along the last dimension.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Rounds an f32 (or any number, first rounded to f32) to the nearest f16, ties to even. Returns the 16 bits. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;

  if (exp === 0xff) {
    // inf stays inf; NaN stays a quiet NaN keeping the top payload bits.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // biased f16 exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // Subnormal f16 (or zero): value = m * 2^-24 with m = full mantissa >> shift.
    if (e < -10) return sign; // below half the smallest subnormal -> ±0
    const full = mant | 0x800000; // implicit leading one
    const shift = 14 - e; // 14..24
    return sign | roundShift(full, shift);
  }
  // Normal: keep 10 mantissa bits, round the 13 dropped ones; a carry rolls into the exponent (and up to inf).
  return sign | roundShift((e << 23) | mant, 13);
}

/** value >> shift, rounded to nearest with ties to even. */
function roundShift(v: number, shift: number): number {
  const kept = Math.floor(v / 2 ** shift);
  const rest = v - kept * 2 ** shift;
  const half = 2 ** (shift - 1);
  if (rest > half || (rest === half && (kept & 1) === 1)) return kept + 1;
  return kept;
}

/** The f32 value of 16 f16 bits (exact: every f16 is an f32). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Packs f32 values as f16 pairs; an odd length is padded with one +0 half. */
export function packF16(a: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(Math.ceil(a.length / 2));
  for (let i = 0; i < out.length; i++) {
    const lo = f32ToF16Bits(a[2 * i]);
    const hi = 2 * i + 1 < a.length ? f32ToF16Bits(a[2 * i + 1]) : 0;
    out[i] = (lo | (hi << 16)) >>> 0;
  }
  return out;
}

/** Unpacks `n` halves (default: all) back to f32. */
export function unpackF16(p: Uint32Array, n = p.length * 2): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const w = p[i >>> 1];
    out[i] = f16BitsToF32(i & 1 ? w >>> 16 : w & 0xffff);
  }
  return out;
}

/** Rounds every element to the nearest f16 (what a kernel sees after packF16). */
export function roundToF16(a: Float32Array): Float32Array {
  return unpackF16(packF16(a), a.length);
}
