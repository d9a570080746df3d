/**
 * A step-time model for projecting the scheduler onto GPUs we do not have:
 * the time of one engine step from what it must read and compute,
 *
 *   t(step) = max(bytes read ÷ bandwidth, FLOPs ÷ rate(rows)) + layers × per-layer cost + fixed per-step cost
 *
 * where bytes = every weight once (a step reads each matrix once, however many
 * rows it runs) + the KV each row attends over, FLOPs = 2 × matrix parameters ×
 * rows + attention (4 × context × heads × head_dim per row) + the LM head for
 * sampled rows, and an image's vision-encoder run is added to the step that
 * starts its prompt. The matmul rate may depend on the rows in a step (a
 * one-row matvec runs other kernels than a 64-row tile): `rate` is a table of
 * (rows, FLOP/s) interpolated in log(rows). The per-layer cost is what a
 * layer's dozen small dispatches cost whatever their size (launch, barriers
 * between dependent kernels): it dominates tiny models.
 */
import type { ModelConfig } from '../../src/model/config.ts';

export interface DeviceModel {
  name: string;
  /** Bytes per second a streaming kernel reaches. */
  bandwidth: number;
  /** Matmul FLOP/s by rows per step, ascending rows. */
  rate: { rows: number; flops: number }[];
  /** Per-step cost besides the GPU's work: recording, submit, readback, scheduling (ms). */
  fixedMs: number;
  /** GPU time per decoder layer beyond its bytes and FLOPs (ms). */
  perLayerMs: number;
  /** Where the figures come from. */
  source: string;
  /** True for a GPU we did not measure. */
  projected: boolean;
}

/** The decoder (and optional vision tower) a step runs, as counts. */
export interface ModelShape {
  name: string;
  text: Pick<ModelConfig, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'vocabSize' | 'tieWordEmbeddings'>;
  weightBytesPerParam: number;
  kvBytesPerValue: number;
  /** FLOPs of one image through the vision encoder and projector (0 for a text model). */
  imageFlops: number;
  /** Bytes of the vision weights, read once per image. */
  imageWeightBytes: number;
}

/** One step as the model needs it: the context of each decode row, and each prefill chunk. */
export interface StepShape {
  decodeContexts: number[];
  prefill: { start: number; count: number; samples: boolean }[];
  /** Images whose encoder runs in this step. */
  images: number;
}

export function matrixParams(t: ModelShape['text']): number {
  const attn = t.hiddenSize * (t.numHeads + 2 * t.numKvHeads) * t.headDim + t.numHeads * t.headDim * t.hiddenSize;
  return t.numLayers * (attn + 3 * t.hiddenSize * t.intermediateSize);
}

/** KV bytes one token holds across all layers. */
export function kvBytesPerToken(s: ModelShape): number {
  const t = s.text;
  return t.numLayers * 2 * t.numKvHeads * t.headDim * s.kvBytesPerValue;
}

/** FLOP/s at `rows`, interpolated in log(rows) between the table's points, flat past its ends. */
export function rateAt(d: DeviceModel, rows: number): number {
  const r = d.rate;
  if (rows <= r[0].rows) return r[0].flops;
  for (let i = 1; i < r.length; i++) {
    if (rows <= r[i].rows) {
      const f = (Math.log(rows) - Math.log(r[i - 1].rows)) / (Math.log(r[i].rows) - Math.log(r[i - 1].rows));
      return r[i - 1].flops + f * (r[i].flops - r[i - 1].flops);
    }
  }
  return r[r.length - 1].flops;
}

/** Predicted wall time of one step, in ms; 0 for an empty step. */
export function stepMs(d: DeviceModel, s: ModelShape, step: StepShape): number {
  const t = s.text;
  const rows = step.decodeContexts.length + step.prefill.reduce((n, c) => n + c.count, 0);
  if (rows === 0 && step.images === 0) return 0;
  const sampled = step.decodeContexts.length + step.prefill.filter((c) => c.samples).length;
  const head = t.vocabSize * t.hiddenSize;
  const kvTok = kvBytesPerToken(s);
  // attention: each row reads the KV of its context once (decode) / the chunk's rows share the prefix (prefill)
  const attnCtx = step.decodeContexts.reduce((n, c) => n + c, 0) + step.prefill.reduce((n, c) => n + c.count * (c.start + (c.count + 1) / 2), 0);
  const kvRead = step.decodeContexts.reduce((n, c) => n + c, 0) * kvTok + step.prefill.reduce((n, c) => n + (c.start + c.count) * kvTok, 0);
  const bytes = rows > 0 ? (matrixParams(t) + (sampled > 0 ? head : 0)) * s.weightBytesPerParam + kvRead : 0;
  const flops = 2 * matrixParams(t) * rows + 2 * head * sampled + 4 * attnCtx * t.numHeads * t.headDim * t.numLayers;
  const gpuMs = rows > 0 ? 1000 * Math.max(bytes / d.bandwidth, flops / rateAt(d, rows)) : 0;
  const imageMs = step.images > 0 ? 1000 * step.images * Math.max(s.imageWeightBytes / d.bandwidth, s.imageFlops / rateAt(d, 1024)) : 0;
  return gpuMs + (rows > 0 ? t.numLayers * d.perLayerMs : 0) + imageMs + d.fixedMs;
}

/**
 * FLOPs of one image in SmolVLM's vision tower (SigLIP) and connector: each
 * tile of `patches` patches through `layers` transformer layers, then the
 * pixel-shuffled features through the projector.
 */
export function visionFlops(v: { hidden: number; intermediate: number; layers: number; patches: number; tiles: number; projectorIn: number; projectorOut: number; tokensPerTile: number }): number {
  const perLayer = 2 * v.patches * (4 * v.hidden * v.hidden + 2 * v.hidden * v.intermediate) + 4 * v.patches * v.patches * v.hidden;
  return v.tiles * (v.layers * perLayer + 2 * v.tokensPerTile * v.projectorIn * v.projectorOut);
}
