/**
 * Sampling parameters as the sample kernel reads them, and the per-row
 * constants derived from them on the CPU (the kernel never divides: WGSL
 * division is not correctly rounded, so 1/T-like values come from here and
 * the TS reference uses the very same numbers).
 *
 * Row layout in the params buffer, 8 words = 32 bytes per row:
 *
 *   word 0  flags   u32  bit 0: greedy (temperature <= 0)
 *   word 1  topK    u32  0 = off
 *   word 2  topP    f32  >= 1 = off
 *   word 3  scale   f32  log2(e) / temperature, clamped to [1e-30, 1e30]
 *   word 4  cut     f32  -64 / scale: tokens with logit - max < cut get weight 0
 *   word 5  seed    u32
 *   word 6  step    u32  decode step: each step draws a fresh number from the same seed
 *   word 7  (zero)
 */

/** temperature 0 = greedy; topK 0 = off; topP 1 = off. */
export interface SamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

/** Threads per group in the kernel's two-level reduction (the workgroup size is a multiple). */
export const SAMPLE_GROUP = 16;
/** The largest workgroup the sample kernel uses. */
export const SAMPLE_MAX_WG = 256;

/**
 * Workgroup size for a vocab: about 16 tokens a thread, 16 to 256 threads (a
 * power of two). It depends on the vocab only, so a row's token is the same on
 * every adapter and in the reference, which sums in the same order.
 */
export function sampleWorkgroupSize(vocab: number): number {
  let wg = SAMPLE_GROUP;
  while (wg < SAMPLE_MAX_WG && wg * 16 < vocab) wg *= 2;
  return wg;
}
/** Bytes per row in the params buffer. */
export const SAMPLE_PARAMS_BYTES = 32;

/** One row's values exactly as the kernel reads them (f32 fields already rounded). */
export interface RowParams {
  greedy: boolean;
  topK: number;
  topP: number;
  scale: number;
  cut: number;
  seed: number;
  step: number;
}

const SCALE_MIN = 1e-30;
const SCALE_MAX = 1e30;

/** Validates one row's parameters and derives what the kernel reads. Throws RangeError naming the bad field. */
export function rowParams(p: SamplingParams, step: number): RowParams {
  const bad = (what: string, v: unknown): never => {
    throw new RangeError(`sample: ${what}, got ${String(v)}`);
  };
  if (typeof p.temperature !== 'number' || Number.isNaN(p.temperature)) bad('temperature must be a number', p.temperature);
  if (!Number.isInteger(p.topK) || p.topK < 0) bad('topK must be a non-negative integer (0 = off)', p.topK);
  if (typeof p.topP !== 'number' || !(p.topP >= 0)) bad('topP must be a number in [0, 1] (1 = off)', p.topP);
  if (!Number.isSafeInteger(p.seed)) bad('seed must be an integer (taken modulo 2^32)', p.seed);
  if (!Number.isSafeInteger(step) || step < 0) bad('step must be a non-negative integer', step);
  const greedy = p.temperature <= 0;
  const scale = greedy ? 0 : Math.fround(Math.min(Math.max(Math.LOG2E / p.temperature, SCALE_MIN), SCALE_MAX));
  return {
    greedy,
    topK: Math.min(p.topK, 0xffffffff),
    topP: Math.fround(Math.min(p.topP, 1)),
    scale,
    cut: greedy ? 0 : Math.fround(-64 / scale),
    seed: p.seed >>> 0,
    step: step >>> 0,
  };
}

/** Packs per-row params into the layout above; row r sits at byte offset r * 32. */
export function packSamplingParams(rows: { params: SamplingParams; step: number }[]): ArrayBuffer {
  const buf = new ArrayBuffer(rows.length * SAMPLE_PARAMS_BYTES);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  rows.forEach(({ params, step }, r) => {
    const rp = rowParams(params, step);
    const o = r * (SAMPLE_PARAMS_BYTES / 4);
    u[o] = rp.greedy ? 1 : 0;
    u[o + 1] = rp.topK;
    f[o + 2] = rp.topP;
    f[o + 3] = rp.scale;
    f[o + 4] = rp.cut;
    u[o + 5] = rp.seed;
    u[o + 6] = rp.step;
  });
  return buf;
}
