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
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) {
    // inf stays inf; NaN stays a quiet NaN keeping the top payload bits.
    return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to inf
  if (abs >= 0x38800000) {
    // Normal half (>= 2^-14): rebias the exponent, round away 13 mantissa bits
    // to nearest even; a carry rolls into the exponent.
    const v = abs - 0x38000000;
    return sign | ((v + 0x0fff + ((v >>> 13) & 1)) >>> 13);
  }
  // Subnormal half or zero: value / 2^-24 = mant * 2^(e - 126), rounded to nearest even.
  const e = abs >>> 23;
  if (e < 102) return sign; // below 2^-25: rounds to ±0
  const mant = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - e; // 14..24
  const kept = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept);
}

let table: Float32Array | null = null;

/** The f32 value of 16 f16 bits (exact: every f16 is an f32). */
export function f16BitsToF32(h: number): number {
  table ??= buildTable();
  return table[h & 0xffff];
}

function buildTable(): Float32Array {
  const t = new Float32Array(0x10000);
  for (let h = 0; h < 0x10000; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) t[h] = mant === 0 ? sign * Infinity : NaN;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return t;
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

/**
 * Flushes f16 subnormals (|x| < 2^-14 ≈ 6.1e-5) to zero of the same sign,
 * in place; returns `bits`. f16 weight matrices are stored this way: the
 * matmul's f16 loader decodes halves with integer shifts (no
 * unpack2x16float, see shaders/matmul_w_f16.wgsl), which is exact for
 * normals and zero on any GPU but would meet f32 denormals — flushed by
 * many GPUs — for subnormal halves.
 */
export function flushF16Subnormals(bits: Uint16Array): Uint16Array {
  for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7c00) === 0) bits[i] &= 0x8000;
  return bits;
}

/** packF16 for weight matrices: subnormals flushed (flushF16Subnormals). */
export function packF16Weights(a: ArrayLike<number>): Uint32Array {
  const p = packF16(a);
  flushF16Subnormals(new Uint16Array(p.buffer));
  return p;
}
