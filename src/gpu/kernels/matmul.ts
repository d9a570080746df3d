import tiles from '../../../shaders/matmul.wgsl?raw';
import loadF32 from '../../../shaders/matmul_w_f32.wgsl?raw';
import loadF16 from '../../../shaders/matmul_w_f16.wgsl?raw';
import loadF16Native from '../../../shaders/matmul_w_f16_native.wgsl?raw';
import loadQ8 from '../../../shaders/matmul_w_q8.wgsl?raw';
import loadQ4 from '../../../shaders/matmul_w_q4.wgsl?raw';
import { quantizedBytes, type QuantFormat } from '../quantize.ts';
import { grid, type CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import type { Gpu } from '../context.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

/** f16 = IEEE half packed two per u32, element 2i in the low 16 bits, pairs along the last dim. */
export type WeightDtype = 'f32' | 'f16';
/** What a matmul's weights may be: WeightDtype, or a block-quantized format (quantize.ts) with its scales. */
export type MatmulDtype = WeightDtype | QuantFormat;
export const MATMUL_DTYPES: readonly MatmulDtype[] = ['f32', 'f16', 'q8', 'q4'];

/** Each pipeline's module: the tiles with one weight loader appended (built once, not per dispatch). */
const SOURCES: Record<MatmulDtype | 'f16_native', string> = {
  f32: tiles + loadF32, f16: tiles + loadF16, q8: tiles + loadQ8, q4: tiles + loadQ4,
  f16_native: `enable f16;\n${tiles}${loadF16Native}`, // `enable` must open the module
};

export interface MatmulArgs {
  /** Activations [m, k] f32. Must be a buffer other than `out`. */
  x: GPUBuffer;
  /** Weights [n, k] (HF Linear layout [out, in]), f32, packed f16, or q8 / q4 codes (quantize.ts). */
  w: GPUBuffer;
  dtype: MatmulDtype;
  /** q8 / q4: the block scales, f32 [n, ceil(k / 32)]. */
  scales?: GPUBuffer;
  /** Optional bias [n] f32. */
  bias?: GPUBuffer;
  /** Result [m, n] f32. */
  out: GPUBuffer;
  m: number;
  n: number;
  k: number;
  /** Add into `out` instead of overwriting it (e.g. a residual). */
  accumulate?: boolean;
  /**
   * f16 weights: read them as f16 (`shader-f16`, the default where the
   * adapter has it) or decode them with integer ops (everywhere else). Both
   * give the same bits; tests and benchmarks pick one to compare.
   */
  f16Path?: 'native' | 'emulated';
}

/** Which entry point of shaders/matmul.wgsl runs and how it is laid out. */
export interface MatmulPlan {
  entry: 'mm_1x4' | 'mm_1x8' | 'mm_2x4' | 'mm_4x4' | 'mm_4x8' | 'mm_any';
  /** Rows and columns of out per thread. */
  tm: number;
  tn: number;
  /** Threads per workgroup. */
  wg: number;
  /** Workgroups: [x, y] over column tiles, z over row tiles. */
  groups: [number, number, number];
}

/**
 * The tile depends on m and k only, and every tile computes an output by the
 * same operations (see the shader header), so a row's result never depends
 * on the batch it is in. The workgroup size only spreads the columns: small
 * problems get smaller workgroups so that there are enough of them.
 */
export function matmulPlan(m: number, n: number, k: number): MatmulPlan {
  const [entry, tm, tn] =
    k % 4 !== 0 ? (['mm_any', 1, 4] as const)
    : m === 1 ? (k % 8 === 0 ? (['mm_1x8', 1, 4] as const) : (['mm_1x4', 1, 4] as const))
    : m <= 3 ? (['mm_2x4', 2, 4] as const)
    : m <= 7 ? (['mm_4x4', 4, 4] as const)
    : (['mm_4x8', 4, 8] as const);
  const rowTiles = Math.ceil(m / tm);
  let wg = 64;
  while (wg > 16 && Math.ceil(n / (tn * wg)) * rowTiles < 32) wg /= 2;
  const [gx, gy] = grid(Math.ceil(n / (tn * wg)));
  return { entry, tm, tn, wg, groups: [gx, gy, rowTiles] };
}

/** out[m, n] (+)= x[m, k] · W[n, k]^T (+ bias[n]). */
export function encodeMatmul(rec: CommandRecorder, a: MatmulArgs): void {
  const { x, w, dtype, bias, out, m, n, k, scales } = a;
  assertPositiveInt('matmul', { m, n, k });
  if (dtype === 'f16' && k % 2 !== 0) throw new RangeError(`matmul: f16 weights need an even k (pairs along k), got k=${k}`);
  const quant = dtype === 'q8' || dtype === 'q4';
  if (quant !== (scales !== undefined)) throw new RangeError(`matmul: ${dtype} weights ${quant ? 'need a scales buffer' : 'take no scales buffer'}`);
  if (out === x || out === w || out === bias || out === scales) throw new RangeError('matmul: out must not be x, w, bias or scales (WebGPU forbids aliasing a writable binding)');
  assertFits('matmul', { x }, m * k * 4);
  if (quant) {
    const scaleBytes = n * Math.ceil(k / 32) * 4;
    assertFits('matmul', { w }, quantizedBytes(dtype, n, k) - scaleBytes);
    assertFits('matmul', { scales: scales! }, scaleBytes);
  } else assertFits('matmul', { w }, n * k * (dtype === 'f16' ? 2 : 4));
  assertFits('matmul', { out }, m * n * 4);
  if (bias) assertFits('matmul', { bias }, n * 4);

  const plan = matmulPlan(m, n, k);
  if (plan.groups[2] > 65535) throw new RangeError(`matmul: m=${m} needs ${plan.groups[2]} row tiles, more than one dispatch covers (65535)`);
  const constants = { WG: plan.wg, HAS_BIAS: bias ? 1 : 0, ACCUMULATE: a.accumulate ? 1 : 0 };
  const pipeline = matmulPipeline(rec.gpu, dtype, a.f16Path ?? (rec.gpu.hasF16 ? 'native' : 'emulated'), constants, plan.entry);
  // The shader always binds a bias; without one, x stands in and is never read. Only the
  // quantized loaders declare binding 5 (their scales).
  rec.dispatch(pipeline, [x, w, bias ?? x, out, ...(scales ? [scales] : [])], new Uniforms().u32(m).u32(n).u32(k), plan.groups);
}

function matmulPipeline(gpu: Gpu, dtype: MatmulDtype, f16Path: 'native' | 'emulated', constants: Record<string, number>, entry: MatmulPlan['entry']): GPUComputePipeline {
  if (dtype !== 'f16' || f16Path === 'emulated') return gpu.pipelines.get(`matmul_${dtype}`, SOURCES[dtype], constants, entry);
  if (!gpu.hasF16) throw new Error("matmul: f16Path 'native' needs an adapter with the 'shader-f16' feature; this one has none (use 'emulated')");
  return gpu.pipelines.get('matmul_f16_native', SOURCES.f16_native, constants, entry);
}
