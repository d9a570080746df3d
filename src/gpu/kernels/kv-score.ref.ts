import { roundF16 } from './kv-write.ref.ts';
import type { KvAttentionScoreMode } from './kv-score.ts';
import type { KvDtype } from '../kv-layout.ts';

/**
 * Plain-TS references of the kv_score_* kernels on one contiguous sequence,
 * f64 math, exact two-pass softmax. Returns f32 [numKvHeads][numTokens].
 */

/** One sequence: K and V as [token][kvHead][headDim]; 'f16' rounds them on read like the pool stores them. */
export interface ScoreRefSeq {
  k: Float32Array;
  v: Float32Array;
  numTokens: number;
  numKvHeads: number;
  headDim: number;
  dtype: KvDtype;
}

/** Window queries: row i (position numTokens - window + i), head h at q[i*qRowStride + qOffset + h*headDim + d]. */
export interface ScoreRefWindow {
  q: Float32Array;
  qRowStride: number;
  qOffset: number;
  window: number;
  numHeads: number;
  scale?: number;
}

const reader = (dtype: KvDtype) => (dtype === 'f16' ? roundF16 : (x: number) => x);

function row(s: ScoreRefSeq, which: 'k' | 'v', j: number, g: number): number[] {
  const rd = reader(s.dtype);
  const b = (j * s.numKvHeads + g) * s.headDim;
  return Array.from(s[which].subarray(b, b + s.headDim), rd);
}

function qRow(w: ScoreRefWindow, i: number, h: number, D: number): Float32Array {
  const b = i * w.qRowStride + w.qOffset + h * D;
  return w.q.subarray(b, b + D);
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let d = 0; d < a.length; d++) s += a[d] * b[d];
  return s;
};

/** -‖K_j‖ per kv head. */
export function knormScoreRef(s: ScoreRefSeq): Float32Array {
  const out = new Float32Array(s.numKvHeads * s.numTokens);
  for (let g = 0; g < s.numKvHeads; g++) {
    for (let j = 0; j < s.numTokens; j++) {
      const k = row(s, 'k', j, g);
      out[g * s.numTokens + j] = -Math.sqrt(dot(k, k));
    }
  }
  return out;
}

/** keepScore for the first `sinks` tokens, else the position. */
export function positionScoreRef(numKvHeads: number, numTokens: number, sinks: number, keepScore: number): Float32Array {
  const out = new Float32Array(numKvHeads * numTokens);
  for (let t = 0; t < out.length; t++) out[t] = t % numTokens < sinks ? keepScore : t % numTokens;
  return out;
}

/** Softmax (causal) of window query i, head h over keys 0..pos_i; zeros past pos_i. */
function attentionRow(s: ScoreRefSeq, w: ScoreRefWindow, i: number, h: number): Float64Array {
  const D = s.headDim;
  const scale = w.scale ?? 1 / Math.sqrt(D);
  const g = Math.floor(h / (w.numHeads / s.numKvHeads));
  const nk = s.numTokens - w.window + i + 1;
  const q = qRow(w, i, h, D);
  const a = new Float64Array(s.numTokens);
  let max = -Infinity;
  for (let j = 0; j < nk; j++) max = Math.max(max, (a[j] = scale * dot(q, row(s, 'k', j, g))));
  let sum = 0;
  for (let j = 0; j < nk; j++) sum += a[j] = Math.exp(a[j] - max);
  for (let j = 0; j < nk; j++) a[j] /= sum;
  return a;
}

export interface AttentionScoreRefOptions {
  mode: KvAttentionScoreMode;
  poolKernel: number;
  keepFrom: number;
  keepScore: number;
}

/** Window attention combined by mode, mean over the kv group's heads, max-pooled over keys < keepFrom. */
export function attentionScoreRef(s: ScoreRefSeq, w: ScoreRefWindow, o: AttentionScoreRefOptions): Float32Array {
  const N = s.numTokens;
  const group = w.numHeads / s.numKvHeads;
  const first = o.mode === 'last' ? w.window - 1 : 0;
  const div = (o.mode === 'mean' ? w.window : 1) * group;
  const raw = new Float64Array(s.numKvHeads * N);
  for (let h = 0; h < w.numHeads; h++) {
    const g = Math.floor(h / group);
    for (let i = first; i < w.window; i++) {
      const a = attentionRow(s, w, i, h);
      for (let j = 0; j < N; j++) raw[g * N + j] += a[j] / div;
    }
  }
  const r = (o.poolKernel - 1) / 2;
  const out = new Float32Array(s.numKvHeads * N);
  for (let g = 0; g < s.numKvHeads; g++) {
    for (let j = 0; j < N; j++) {
      if (j >= o.keepFrom) {
        out[g * N + j] = o.keepScore;
        continue;
      }
      let m = -Infinity;
      for (let k = Math.max(0, j - r); k <= Math.min(o.keepFrom - 1, j + r); k++) m = Math.max(m, raw[g * N + k]);
      out[g * N + j] = m;
    }
  }
  return out;
}

/**
 * Expected attention: future queries ~ N(mean, diag var) of the window's
 * queries per head; softmax over keys of scale·<μ,k> + scale²·Σ var·k²/2,
 * mean over the group's heads, times ‖V_j‖; sinks get keepScore.
 */
export function expectedScoreRef(s: ScoreRefSeq, w: ScoreRefWindow, sinks: number, keepScore: number): Float32Array {
  const N = s.numTokens, D = s.headDim;
  const scale = w.scale ?? 1 / Math.sqrt(D);
  const group = w.numHeads / s.numKvHeads;
  const acc = new Float64Array(s.numKvHeads * N);
  for (let h = 0; h < w.numHeads; h++) {
    const g = Math.floor(h / group);
    const mu = new Float64Array(D), vr = new Float64Array(D);
    for (let i = 0; i < w.window; i++) qRow(w, i, h, D).forEach((x, d) => (mu[d] += x / w.window));
    for (let i = 0; i < w.window; i++) qRow(w, i, h, D).forEach((x, d) => (vr[d] += (x - mu[d]) ** 2 / w.window));
    const e = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      const k = row(s, 'k', j, g);
      e[j] = scale * dot(mu, k) + 0.5 * scale * scale * dot(vr, k.map((x) => x * x));
    }
    const max = Math.max(...e);
    let sum = 0;
    for (let j = 0; j < N; j++) sum += e[j] = Math.exp(e[j] - max);
    for (let j = 0; j < N; j++) acc[g * N + j] += e[j] / sum / group;
  }
  const out = new Float32Array(s.numKvHeads * N);
  for (let g = 0; g < s.numKvHeads; g++) {
    for (let j = 0; j < N; j++) {
      const v = row(s, 'v', j, g);
      out[g * N + j] = j < sinks ? keepScore : acc[g * N + j] * Math.sqrt(dot(v, v));
    }
  }
  return out;
}
