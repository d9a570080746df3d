import { describe, expect, it } from 'vitest';
import source from '../../shaders/f16_check.wgsl?raw';
import { testGpu, rng } from '../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readU32 } from './buffers.ts';
import { CommandRecorder } from './recorder.ts';
import { Uniforms } from './uniforms.ts';
import { f16BitsToF32, f32ToF16Bits, packF16, unpackF16 } from './f16.ts';
import type { Gpu } from './context.ts';

const WG = 64;

/** Runs one entry point of shaders/f16_check.wgsl over `n` words. */
async function runCheck(gpu: Gpu, entry: 'unpack' | 'pack', input: Uint32Array, n: number, outWords: number): Promise<Uint32Array> {
  const src = uploadBuffer(gpu, 'f16-src', input);
  const dst = storageBuffer(gpu, 'f16-dst', outWords * 4);
  const rec = new CommandRecorder(gpu, 'f16-check');
  rec.dispatch(gpu.pipelines.get('f16_check', source, { WG }, entry), [src, dst], new Uniforms().u32(n), Math.ceil(n / WG));
  await rec.submit();
  const out = await readU32(gpu, dst, 0, outWords);
  gpu.destroyBuffer(src);
  gpu.destroyBuffer(dst);
  return out;
}

const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];

describe('f16 helpers', () => {
  it('convert hand-checked values', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [65504, 0x7bff],
      [65519.99, 0x7bff], [65520, 0x7c00], [1e9, 0x7c00], [-Infinity, 0xfc00], [Infinity, 0x7c00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [2 ** -14 - 2 ** -25, 0x0400], [1e-10, 0x0000],
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x), `f32ToF16Bits(${x})`).toBe(h);
    expect(f32ToF16Bits(NaN) & 0x7e00).toBe(0x7e00);
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xfbff)).toBe(-65504);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
  });

  it('round-trip every finite half exactly and pack pairs little end first', () => {
    const bad: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) !== 0x7c00 && f32ToF16Bits(f16BitsToF32(h)) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
    const p = packF16(new Float32Array([1, -2, 0.5]));
    expect(Array.from(p)).toEqual([0xc0003c00, 0x00003800]);
    expect(Array.from(unpackF16(p, 3))).toEqual([1, -2, 0.5]);
  });

  it('rounds to nearest, ties to even, at every boundary between neighbouring halves', () => {
    // f32ToF16Bits is monotonic, so checking each midpoint and the f32 values
    // just below and above it pins down the rounding everywhere.
    const f = new Float32Array(1), b = new Uint32Array(f.buffer);
    const step = (x: number, d: number) => { f[0] = x; b[0] += d; return f[0]; };
    const bad: number[] = [];
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2; // exact in f32
      const ok = f32ToF16Bits(mid) === (h & 1 ? h + 1 : h) && f32ToF16Bits(step(mid, -1)) === h && f32ToF16Bits(step(mid, 1)) === h + 1
        && f32ToF16Bits(-mid) === (0x8000 | (h & 1 ? h + 1 : h));
      if (!ok) bad.push(h);
    }
    expect(bad).toEqual([]);
  });

  it('f16BitsToF32 matches unpack2x16float on the GPU for all 65536 halves', async () => {
    const gpu = await testGpu();
    const words = new Uint32Array(0x8000);
    for (let i = 0; i < words.length; i++) words[i] = ((2 * i) | ((2 * i + 1) << 16)) >>> 0;
    const got = await runCheck(gpu, 'unpack', words, words.length, 0x10000);
    const gotF = new Float32Array(got.buffer);
    const bad: string[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const want = f16BitsToF32(h);
      const ok = Number.isNaN(want) ? Number.isNaN(gotF[h]) : got[h] === bitsOf(want);
      if (!ok) bad.push(`0x${h.toString(16)}`);
    }
    expect(bad).toEqual([]);
  });

  // Normal range only: SwiftShader's pack2x16float does not round f16
  // subnormals to nearest (4.67897e-6, just above 78.5 * 2^-24, packs to 78);
  // the CPU helper is checked there by the hand-checked cases above.
  it('f32ToF16Bits matches pack2x16float on the GPU for random, tie and edge values in the normal range', async () => {
    const gpu = await testGpu();
    const r = rng(16);
    const vals: number[] = [0, -0, 1, -1, 65504, -65504, 2 ** -14, -(2 ** -14), 0.1, 1 / 3, 2 ** -14 * (1 + 2 ** -11)];
    for (let i = 0; i < 3000; i++) {
      const x = (1 + r()) * 2 ** (Math.floor(r() * 30) - 14); // 2^-14 .. 2^16 (some overflow to inf)
      vals.push(Math.min(x, 65504) * (r() < 0.5 ? 1 : -1));
      // an exact tie between two neighbouring normal halves, and its neighbours
      const h = 0x0400 + Math.floor(r() * (0x7bff - 0x0400));
      const mid = (f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2;
      vals.push(r() < 0.5 ? mid : -mid, mid * (1 + 2 ** -20), mid * (1 - 2 ** -20));
    }
    if (vals.length % 2) vals.push(0);
    const f = new Float32Array(vals);
    const got = await runCheck(gpu, 'pack', new Uint32Array(f.buffer), f.length / 2, f.length / 2);
    const want = packF16(f);
    let mismatches = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) mismatches++;
    expect(mismatches).toBe(0);
  });
});
