/**
 * CPU reference of shaders/sample.wgsl for one row: the same rule, the same
 * integer exp, the same f32 operations in the same order, so the token id is
 * the kernel's bit for bit. Thresholds are found here by plain bisection on
 * the keys (the kernel uses an 8-way search): the predicate is monotone, so
 * both find the same unique threshold.
 */
import { rowParams, SAMPLE_GROUP, sampleWorkgroupSize, type RowParams, type SamplingParams } from './sample-params.ts';

const f32 = Math.fround;
const scratch = new DataView(new ArrayBuffer(4));

function bitsOf(x: number): number {
  scratch.setFloat32(0, x, true);
  return scratch.getUint32(0, true);
}

function floatOf(bits: number): number {
  scratch.setUint32(0, bits >>> 0, true);
  return scratch.getFloat32(0, true);
}

/** A u32 that orders like the f32 (-0 counts as +0). */
export function sampleKey(x: number): number {
  let b = bitsOf(x);
  if (b === 0x80000000) b = 0;
  return (b & 0x80000000) !== 0 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

function unkey(k: number): number {
  return (k & 0x80000000) !== 0 ? floatOf(k & 0x7fffffff) : floatOf(~k >>> 0);
}

/** floor(a * b / 2^32) for u32 a, b. */
function mulhi(a: number, b: number): number {
  const ah = a >>> 16, al = a & 0xffff, bh = b >>> 16, bl = b & 0xffff;
  const hl = ah * bl, lh = al * bh;
  const mid = ((al * bl) >>> 16) + (hl & 0xffff) + (lh & 0xffff);
  return (ah * bh + (hl >>> 16) + (lh >>> 16) + (mid >>> 16)) >>> 0;
}

/** round(2^32 * 2^(-a/8)), a = 1..7; the shader's neg_eighths. */
const NEG_EIGHTHS = [0, 0xeac0c6e8, 0xd744fccb, 0xc5672a11, 0xb504f334, 0xa5fed6aa, 0x9837f052, 0x8b95c1e4];
const ONE_Q31 = 0x80000000;

/** r in [0, 2^24) -> 2^24 * 2^(-r / 2^24), as the shader's exp2_frac. */
function exp2Frac(r: number): number {
  const a = r >>> 21;
  const t = mulhi(((r & 0x1fffff) << 8) >>> 0, 0xb17217f8);
  const u5 = ONE_Q31 - (mulhi(t, 0x33333333) >>> 1);
  const u4 = ONE_Q31 - mulhi(u5, t >>> 2);
  const u3 = ONE_Q31 - mulhi(u4, mulhi(t, 0x55555555));
  const u2 = ONE_Q31 - mulhi(u3, t >>> 1);
  let g = ONE_Q31 - mulhi(u2, t);
  if (a !== 0) g = mulhi(g, NEG_EIGHTHS[a]);
  return Math.max((g + 64) >>> 7, 0x800000);
}

/** The token weight 2^((l - m) * scale) (exp((l - max)/T)), bit-identical to the shader's. */
export function sampleWeight(l: number, m: number, scale: number, cut: number): number {
  const d = f32(l - m);
  if (d < cut) return 0;
  const y = Math.max(f32(d * scale), -64);
  const q = Math.trunc(y * -16777216);
  const n = q >>> 24;
  return floatOf((((126 - n) << 23) >>> 0) + (exp2Frac(q & 0xffffff) - 0x800000));
}

function pcg(v: number): number {
  const s = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** u in [0, 1) with 24 bits, a pure function of (seed, step); the shader's rng. */
export function sampleRng(seed: number, step: number): number {
  return (pcg((pcg(seed >>> 0) ^ step) >>> 0) >>> 8) * 5.9604644775390625e-8;
}

/** One row, sampled exactly as the kernel does (see shaders/sample.wgsl). */
export function sampleRef(logits: Float32Array, p: SamplingParams, step: number): number {
  return sampleRow(logits, rowParams(p, step));
}

function sampleRow(logits: Float32Array, rp: RowParams): number {
  const vocab = logits.length;
  if (vocab === 0) throw new RangeError('sample: vocab must be a positive integer, got 0');
  const keys = new Uint32Array(vocab);
  let kmax = 0, imax = 0, kmin = 0xffffffff;
  for (let i = 0; i < vocab; i++) {
    const k = (keys[i] = sampleKey(logits[i]));
    if (k > kmax) { kmax = k; imax = i; }
    if (k < kmin) kmin = k;
  }
  if (rp.greedy) return imax;
  const m = unkey(kmax);
  const w = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) w[i] = sampleWeight(logits[i], m, rp.scale, rp.cut);
  const red = new Reduction(vocab);

  let t = kmin;
  if (rp.topK > 0 && rp.topK < vocab) {
    t = largestTrue(kmin, kmax + 1, (c) => red.count(keys, c) >= rp.topK);
  }
  if (rp.topP < 1) {
    const need = f32(rp.topP * red.mass(keys, w, t).total);
    t = largestTrue(t, kmax + 1, (c) => {
      const z = red.mass(keys, w, c).total;
      return z >= need && z > 0;
    });
  }
  return red.draw(keys, w, t, sampleRng(rp.seed, rp.step));
}

/** The largest c in [lo, hi) with pred(c), given pred(lo) and pred monotone (true below, false above). */
function largestTrue(lo: number, hi: number, pred: (c: number) => boolean): number {
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (pred(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The kernel's summation order: thread chunks, groups of 16 threads, then groups. */
class Reduction {
  private readonly wg: number;
  private readonly chunk: number;
  private readonly groups: number;

  constructor(private readonly vocab: number) {
    this.wg = sampleWorkgroupSize(vocab);
    this.chunk = Math.ceil(vocab / this.wg);
    this.groups = this.wg / SAMPLE_GROUP;
  }

  count(keys: Uint32Array, c: number): number {
    let n = 0;
    for (let i = 0; i < this.vocab; i++) if (keys[i] >= c) n++;
    return n;
  }

  /** Per-thread sums, per-group sums and the total of w over keys >= c. */
  mass(keys: Uint32Array, w: Float32Array, c: number): { threads: Float32Array; groups: Float32Array; total: number } {
    const threads = new Float32Array(this.wg);
    for (let j = 0; j < this.wg; j++) {
      const [b0, b1] = this.span(j);
      let s = 0;
      for (let i = b0; i < b1; i++) if (keys[i] >= c) s = f32(s + w[i]);
      threads[j] = s;
    }
    const groups = new Float32Array(this.groups);
    let total = 0;
    for (let g = 0; g < this.groups; g++) {
      let s = 0;
      for (let j = 0; j < SAMPLE_GROUP; j++) s = f32(s + threads[g * SAMPLE_GROUP + j]);
      groups[g] = s;
      total = f32(total + s);
    }
    return { threads, groups, total };
  }

  /** The first token whose running kept mass exceeds u * mass(t). */
  draw(keys: Uint32Array, w: Float32Array, t: number, u: number): number {
    const { threads, groups, total } = this.mass(keys, w, t);
    const goal = f32(u * total);
    let gpre = 0;
    for (let g = 0; g < this.groups; g++) {
      let wj = 0;
      for (let j = g * SAMPLE_GROUP; j < (g + 1) * SAMPLE_GROUP; j++) {
        const s = threads[j];
        if (f32(gpre + wj) <= goal && goal < f32(gpre + f32(wj + s))) return this.walk(j, keys, w, t, gpre, wj, goal);
        wj = f32(wj + s);
      }
      gpre = f32(gpre + groups[g]);
    }
    throw new Error('sampleRef: no thread covers the draw (unreachable)');
  }

  private walk(j: number, keys: Uint32Array, w: Float32Array, t: number, gpre: number, wj: number, goal: number): number {
    const [b0, b1] = this.span(j);
    let run = wj;
    let pick = b0;
    for (let i = b0; i < b1; i++) {
      if (keys[i] < t) continue;
      run = f32(run + w[i]);
      pick = i;
      if (f32(gpre + run) > goal) break;
    }
    return pick;
  }

  private span(j: number): [number, number] {
    const b0 = Math.min(j * this.chunk, this.vocab);
    return [b0, Math.min(b0 + this.chunk, this.vocab)];
  }
}
