import source from '../../../shaders/rope.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

/** HF `rope_scaling` (camelCase): 'default' (none), 'linear' (positions / factor) or 'llama3' (smoothed by wavelength). */
export interface RopeScaling {
  ropeType: 'default' | 'linear' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/**
 * Inverse frequencies for the D/2 rotated pairs, in f64, with HF semantics:
 * inv[i] = 1 / theta^(2i / D); 'linear' divides by factor; 'llama3' follows
 * transformers' `_compute_llama3_parameters`: wavelengths shorter than
 * original/highFreqFactor are kept, longer than original/lowFreqFactor
 * divided by factor, and in between blended smoothly.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling): Float64Array {
  assertPositiveInt('rope', { headDim });
  if (headDim % 2 !== 0) throw new RangeError(`rope: headDim must be even, got ${headDim}`);
  if (!(theta > 0)) throw new RangeError(`rope: theta must be > 0, got ${theta}`);
  const inv = Float64Array.from({ length: headDim / 2 }, (_, i) => 1 / theta ** ((2 * i) / headDim));
  const type = scaling?.ropeType ?? 'default';
  if (type === 'default') return inv;
  const factor = need(scaling, 'factor');
  if (type === 'linear') return inv.map((f) => f / factor);
  const low = need(scaling, 'lowFreqFactor');
  const high = need(scaling, 'highFreqFactor');
  const oldContext = need(scaling, 'originalMaxPositionEmbeddings');
  const lowFreqWavelen = oldContext / low;
  const highFreqWavelen = oldContext / high;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (oldContext / wavelen - low) / (high - low);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

function need(s: RopeScaling | undefined, key: 'factor' | 'lowFreqFactor' | 'highFreqFactor' | 'originalMaxPositionEmbeddings'): number {
  const v = s?.[key];
  if (v === undefined || !(v > 0)) throw new RangeError(`rope: '${s?.ropeType}' scaling needs ${key} > 0, got ${v}`);
  return v;
}

/**
 * The table encodeRope reads: [cos: maxPositions x D/2][sin: maxPositions x D/2],
 * cos[p, i] = cos(p * invFreq[i]) computed in f64, then rounded to f32 so
 * the GPU and the CPU reference use identical values.
 */
export function ropeCosSinTable(invFreq: Float64Array, maxPositions: number): Float32Array {
  assertPositiveInt('rope', { maxPositions });
  const half = invFreq.length;
  const t = new Float32Array(2 * maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      t[p * half + i] = Math.cos(p * invFreq[i]);
      t[(maxPositions + p) * half + i] = Math.sin(p * invFreq[i]);
    }
  }
  return t;
}

export interface RopeArgs {
  /** Rows of f32, rotated in place: n rows of `rowStride` elements. */
  x: GPUBuffer;
  /** [n] u32 positions; a position >= maxPositions is clamped to maxPositions - 1. */
  positions: GPUBuffer;
  /** The ropeCosSinTable output for maxPositions and D/2 = headDim/2. */
  cosSin: GPUBuffer;
  n: number;
  numHeads: number;
  headDim: number;
  rowStride: number;
  /** First element of head 0 in each row (e.g. where K starts in a fused QKV row). */
  headOffset: number;
  maxPositions: number;
}

const WG = 256;

/** In-place rotate-half RoPE of `numHeads` heads of `headDim` at `headOffset` in each of n rows. */
export function encodeRope(rec: CommandRecorder, a: RopeArgs): void {
  const { x, positions, cosSin, n, numHeads, headDim, rowStride, headOffset, maxPositions } = a;
  assertPositiveInt('rope', { n, numHeads, headDim, rowStride, maxPositions });
  if (headDim % 2 !== 0) throw new RangeError(`rope: headDim must be even, got ${headDim}`);
  if (!Number.isInteger(headOffset) || headOffset < 0 || headOffset + numHeads * headDim > rowStride) {
    throw new RangeError(`rope: heads [${headOffset}, ${headOffset + numHeads * headDim}) do not fit in a row of ${rowStride} elements`);
  }
  if (x === positions || x === cosSin) throw new RangeError('rope: x must not be the positions or the table (WebGPU forbids aliasing a writable binding)');
  assertFits('rope', { x }, ((n - 1) * rowStride + headOffset + numHeads * headDim) * 4);
  assertFits('rope', { positions }, n * 4);
  assertFits('rope', { cosSin }, 2 * maxPositions * (headDim / 2) * 4);
  const pipeline = rec.gpu.pipelines.get('rope', source, { WG });
  const u = new Uniforms().u32(n).u32(numHeads).u32(headDim / 2).u32(rowStride).u32(headOffset).u32(maxPositions);
  rec.dispatch(pipeline, [x, positions, cosSin], u, Math.ceil((n * numHeads * (headDim / 2)) / WG));
}
