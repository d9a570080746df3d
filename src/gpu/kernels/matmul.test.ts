import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { f16BitsToF32, packF16, packF16Weights, unpackF16 } from '../f16.ts';
import type { Gpu } from '../context.ts';
import { encodeMatmul, matmulPlan, type WeightDtype } from './matmul.ts';
import { matmulAbsRef, matmulRef } from './matmul.ref.ts';

/**
 * Tolerance: f32 accumulation against the f64 reference. The rounding error
 * of a length-k dot product grows like sqrt(k) * u * sum|x_i w_i| for
 * random data (u = 2^-24), so each output may differ from the reference by
 *   TOL_LAMBDA * sqrt(k) * u * (sum_i |x_i w_i| + |bias| + |initial|)  +  u * |ref|.
 */
const U = 2 ** -24;
const TOL_LAMBDA = 4;

function worstError(got: Float32Array, ref: Float32Array, mag: Float64Array, k: number): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const tol = TOL_LAMBDA * Math.sqrt(k) * U * mag[i] + U * Math.abs(ref[i]) + 1e-30;
    const e = Math.abs(got[i] - ref[i]) / tol;
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

interface Case { m: number; n: number; k: number; dtype: WeightDtype; bias: boolean; accumulate: boolean }

function weights(gpu: Gpu, w: Float32Array, dtype: WeightDtype): { buf: GPUBuffer; values: Float32Array } {
  if (dtype === 'f32') return { buf: uploadBuffer(gpu, 'w', w), values: w };
  const packed = packF16Weights(w); // as the model's uploader stores them: subnormals flushed
  return { buf: uploadBuffer(gpu, 'w', packed), values: unpackF16(packed, w.length) };
}

async function runCase(c: Case, seed: number): Promise<number> {
  const gpu = await testGpu();
  const r = rng(seed);
  const x = randomF32(c.m * c.k, r);
  const w = weights(gpu, randomF32(c.n * c.k, r, 0.5), c.dtype);
  const bias = c.bias ? randomF32(c.n, r) : undefined;
  const initial = c.accumulate ? randomF32(c.m * c.n, r, 2) : undefined;
  const gx = uploadBuffer(gpu, 'x', x);
  const gb = bias ? uploadBuffer(gpu, 'bias', bias) : undefined;
  const go = initial ? uploadBuffer(gpu, 'out', initial) : storageBuffer(gpu, 'out', c.m * c.n * 4);
  const rec = new CommandRecorder(gpu);
  encodeMatmul(rec, { x: gx, w: w.buf, dtype: c.dtype, out: go, m: c.m, n: c.n, k: c.k, accumulate: c.accumulate, ...(gb ? { bias: gb } : {}) });
  await rec.submit();
  const got = await readF32(gpu, go, 0, c.m * c.n);
  [gx, w.buf, go, ...(gb ? [gb] : [])].forEach((b) => gpu.destroyBuffer(b));
  const ref = matmulRef(x, w.values, c.m, c.n, c.k, bias, initial);
  return worstError(got, ref, matmulAbsRef(x, w.values, c.m, c.n, c.k, bias, initial), c.k);
}

describe('matmul kernel', () => {
  // (n, k): odd n everywhere; odd k (scalar path), k % 8 == 4 (vec4 tiles) and k % 8 == 0
  // (mm_1x8 at m = 1) for f32; k % 4 == 2 (scalar path), k % 8 == 4 and k % 8 == 0 for f16.
  const shapes: Record<WeightDtype, [number, number][]> = { f32: [[37, 29], [45, 52], [43, 56]], f16: [[33, 30], [39, 44], [41, 64]] };
  let seed = 1;
  for (const dtype of ['f32', 'f16'] as const) {
    for (const [n, k] of shapes[dtype]) {
      for (const m of [1, 3, 17, 64]) {
        const bias = m !== 3, accumulate = m === 3 || m === 17;
        const c: Case = { m, n, k, dtype, bias, accumulate };
        const s = seed++;
        it(`matches the reference: ${dtype} m=${m} n=${n} k=${k} (${matmulPlan(m, n, k).entry})${bias ? ' +bias' : ''}${accumulate ? ' accumulate' : ''}`, async () => {
          expect(await runCase(c, s)).toBeLessThanOrEqual(1);
        });
      }
    }
  }

  it('matches the reference on a larger shape with several workgroups (f32 and f16)', async () => {
    expect(await runCase({ m: 20, n: 301, k: 256, dtype: 'f32', bias: true, accumulate: false }, 99)).toBeLessThanOrEqual(1);
    expect(await runCase({ m: 9, n: 257, k: 128, dtype: 'f16', bias: false, accumulate: true }, 98)).toBeLessThanOrEqual(1);
  });

  it('decodes every normal f16 weight and ±0 exactly, on the vec4 path (m = 64) and the 8-chunk path (m = 1)', async () => {
    const gpu = await testGpu();
    const k = 64;
    const bits: number[] = [0, 0x8000];
    for (let e = 1; e <= 30; e++) for (let m = 0; m < 1024; m++) bits.push((e << 10) | m, 0x8000 | (e << 10) | m);
    while (bits.length % k) bits.push(0x3c00);
    const n = bits.length / k;
    const words = new Uint32Array(bits.length / 2).map((_, i) => (bits[2 * i] | (bits[2 * i + 1] << 16)) >>> 0);
    const gw = uploadBuffer(gpu, 'w', words);
    // x = the identity: out[r, c] = 1 · w[c, r] + exact zeros = w[c, r]
    const eye = new Float32Array(k * k).map((_, i) => (i % (k + 1) === 0 ? 1 : 0));
    const gx = uploadBuffer(gpu, 'x', eye);
    const out64 = storageBuffer(gpu, 'out64', k * n * 4);
    const rows = Array.from({ length: k }, (_, r) => uploadBuffer(gpu, `e${r}`, eye.subarray(r * k, (r + 1) * k)));
    const outs1 = rows.map((_, r) => storageBuffer(gpu, `out1_${r}`, n * 4));
    const rec = new CommandRecorder(gpu);
    encodeMatmul(rec, { x: gx, w: gw, dtype: 'f16', out: out64, m: k, n, k });
    rows.forEach((row, r) => encodeMatmul(rec, { x: row, w: gw, dtype: 'f16', out: outs1[r], m: 1, n, k }));
    await rec.submit();
    expect([matmulPlan(k, n, k).entry, matmulPlan(1, n, k).entry]).toEqual(['mm_4x8', 'mm_1x8']);
    const got64 = await readF32(gpu, out64);
    const got1 = await Promise.all(outs1.map((o) => readF32(gpu, o)));
    let wrong = 0;
    for (let r = 0; r < k; r++) {
      for (let c = 0; c < n; c++) {
        const want = f16BitsToF32(bits[c * k + r]);
        if (!Object.is(got64[r * n + c], want + 0) || !Object.is(got1[r][c], want + 0)) wrong++; // a sum starting at +0 turns -0 into +0
      }
    }
    expect(wrong).toBe(0);
    [gw, gx, out64, ...rows, ...outs1].forEach((b) => gpu.destroyBuffer(b));
  });

  it("reads f16 weights as f16 (shader-f16) with the same bits as the integer decode, on every entry point (where the adapter has shader-f16)", async (ctx) => {
    const gpu = await testGpu();
    if (!gpu.hasF16) ctx.skip(); // SwiftShader has none; a GPU runner runs this
    const r = rng(11);
    for (const [m, n, k] of [[1, 41, 64], [1, 39, 44], [3, 33, 30], [5, 70, 96], [17, 70, 96]] as const) {
      const x = uploadBuffer(gpu, 'x', randomF32(m * k, r));
      const w = weights(gpu, randomF32(n * k, r, 0.5), 'f16');
      const outs = [storageBuffer(gpu, 'native', m * n * 4), storageBuffer(gpu, 'emulated', m * n * 4)];
      const rec = new CommandRecorder(gpu);
      (['native', 'emulated'] as const).forEach((f16Path, i) => encodeMatmul(rec, { x, w: w.buf, dtype: 'f16', out: outs[i], m, n, k, f16Path }));
      await rec.submit();
      const [native, emulated] = await Promise.all(outs.map((o) => readF32(gpu, o)));
      expect(native, `m=${m} n=${n} k=${k} (${matmulPlan(m, n, k).entry})`).toEqual(emulated);
      [x, w.buf, ...outs].forEach((b) => gpu.destroyBuffer(b));
    }
  });

  it("refuses f16Path 'native' on an adapter without shader-f16, naming the way out", async (ctx) => {
    const gpu = await testGpu();
    if (gpu.hasF16) ctx.skip();
    const b = storageBuffer(gpu, 'b', 64), o = storageBuffer(gpu, 'o', 16);
    expect(() => encodeMatmul(new CommandRecorder(gpu), { x: b, w: b, dtype: 'f16', out: o, m: 1, n: 2, k: 4, f16Path: 'native' })).toThrow(/'shader-f16' feature.*use 'emulated'/);
    [b, o].forEach((x) => gpu.destroyBuffer(x));
  });

  it('stores f16 weights with subnormals flushed to signed zero (packF16Weights)', () => {
    const tiny = new Float32Array([3e-5, -3e-5, 6.2e-5, -1, 0, 1e-8]);
    expect(Array.from(new Uint16Array(packF16(tiny).buffer)).slice(0, 6)).toEqual([0x01f7, 0x81f7, 0x0410, 0xbc00, 0, 0]);
    expect(Array.from(new Uint16Array(packF16Weights(tiny).buffer)).slice(0, 6)).toEqual([0, 0x8000, 0x0410, 0xbc00, 0, 0]);
  });

  it('computes a hand-checked case exactly', async () => {
    const gpu = await testGpu();
    // x = [[1,2,3],[4,5,6]], W = [[1,0,-1],[0.5,0.5,0.5]], bias = [10,-1]  ->  [[8, 2], [8, 6.5]]
    const gx = uploadBuffer(gpu, 'x', new Float32Array([1, 2, 3, 4, 5, 6]));
    const gw = uploadBuffer(gpu, 'w', new Float32Array([1, 0, -1, 0.5, 0.5, 0.5]));
    const gb = uploadBuffer(gpu, 'b', new Float32Array([10, -1]));
    const go = storageBuffer(gpu, 'o', 16);
    // f16, k = 2: x = [[1, 2]], W = [[0.5, -0.25], [3, 1]]  ->  [[0, 5]], then accumulate again -> [[0, 10]]
    const hx = uploadBuffer(gpu, 'x', new Float32Array([1, 2]));
    const hw = uploadBuffer(gpu, 'w', packF16(new Float32Array([0.5, -0.25, 3, 1])));
    const ho = storageBuffer(gpu, 'o', 8);
    const rec = new CommandRecorder(gpu);
    encodeMatmul(rec, { x: gx, w: gw, dtype: 'f32', bias: gb, out: go, m: 2, n: 2, k: 3 });
    encodeMatmul(rec, { x: hx, w: hw, dtype: 'f16', out: ho, m: 1, n: 2, k: 2 });
    encodeMatmul(rec, { x: hx, w: hw, dtype: 'f16', out: ho, m: 1, n: 2, k: 2, accumulate: true });
    await rec.submit();
    expect(Array.from(await readF32(gpu, go))).toEqual([8, 2, 8, 6.5]);
    expect(Array.from(await readF32(gpu, ho))).toEqual([0, 10]);
    [gx, gw, gb, go, hx, hw, ho].forEach((b) => gpu.destroyBuffer(b));
  });

  // Every row must come out bit for bit the same whatever the batch: at m=1
  // (mm_1x4), inside m=2 (mm_2x4), m=5 (mm_4x4) and m=17 (mm_4x8), with
  // other rows holding different data.
  for (const dtype of ['f32', 'f16'] as const) {
    it(`is batch invariant: row r alone equals row r in larger batches (${dtype})`, async () => {
      const gpu = await testGpu();
      const [n, k, M] = [70, 96, 17];
      const r = rng(dtype === 'f32' ? 7 : 8);
      const x = randomF32(M * k, r);
      const w = weights(gpu, randomF32(n * k, r, 0.5), dtype);
      const bias = uploadBuffer(gpu, 'bias', randomF32(n, r));
      const gx = uploadBuffer(gpu, 'x', x);
      const batches = [2, 5, M];
      const outs = batches.map((m) => storageBuffer(gpu, `out${m}`, m * n * 4));
      const rows = Array.from({ length: M }, (_, i) => uploadBuffer(gpu, `x${i}`, x.subarray(i * k, (i + 1) * k)));
      const single = rows.map((_, i) => storageBuffer(gpu, `single${i}`, n * 4));
      const rec = new CommandRecorder(gpu);
      batches.forEach((m, b) => encodeMatmul(rec, { x: gx, w: w.buf, dtype, bias, out: outs[b], m, n, k }));
      rows.forEach((row, i) => encodeMatmul(rec, { x: row, w: w.buf, dtype, bias, out: single[i], m: 1, n, k }));
      await rec.submit();
      expect(batches.map((m) => matmulPlan(m, n, k).entry)).toEqual(['mm_2x4', 'mm_4x4', 'mm_4x8']);
      const full = await Promise.all(outs.map((o) => readF32(gpu, o)));
      for (let i = 0; i < M; i++) {
        const alone = await readF32(gpu, single[i]);
        batches.forEach((m, b) => {
          if (i < m) expect(full[b].subarray(i * n, (i + 1) * n), `row ${i} in m=${m}`).toEqual(alone);
        });
      }
      [gx, bias, w.buf, ...outs, ...rows, ...single].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  it('rejects bad shapes and aliasing', async () => {
    const gpu = await testGpu();
    const a = storageBuffer(gpu, 'a', 64), b = storageBuffer(gpu, 'b', 64);
    const rec = new CommandRecorder(gpu);
    expect(() => encodeMatmul(rec, { x: a, w: a, dtype: 'f16', out: b, m: 1, n: 1, k: 3 })).toThrow(/even k/);
    expect(() => encodeMatmul(rec, { x: a, w: a, dtype: 'f32', out: b, m: 2, n: 2, k: 9 })).toThrow(/'x' holds 64 bytes/);
    expect(() => encodeMatmul(rec, { x: a, w: b, dtype: 'f32', out: a, m: 1, n: 1, k: 1 })).toThrow(/out must not be/);
    expect(() => encodeMatmul(rec, { x: a, w: b, dtype: 'f32', out: b, m: 0, n: 1, k: 1 })).toThrow(/positive integer/);
    [a, b].forEach((x) => gpu.destroyBuffer(x));
  });

  it('splits a very wide output over x and y workgroups', () => {
    const plan = matmulPlan(1, 65535 * 64 * 4 + 4, 64);
    expect(plan.groups[1]).toBeGreaterThan(1);
    expect(plan.groups[0] * plan.groups[1] * plan.wg * plan.tn).toBeGreaterThanOrEqual(65535 * 64 * 4 + 4);
  });
});
