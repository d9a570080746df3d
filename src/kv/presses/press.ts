import type { Gpu } from '../../gpu/context.ts';
import { storageUsage } from '../../gpu/buffers.ts';
import type { CommandRecorder } from '../../gpu/recorder.ts';

/**
 * Presses: KV-cache compression policies (after NVIDIA kvpress). A press
 * scores every cached token of one sequence, per (layer, kv head); higher =
 * keep. Scores are computed on the GPU (shaders/kv_score_*.wgsl); selecting
 * the top tokens and compacting the pages happens once, in the compress
 * stage, for every press alike.
 */

/** What a press is given to score one sequence in one layer. */
export interface ScoreContext {
  rec: CommandRecorder;
  layer: number;
  /** That layer's pool buffer (KvPool.layer(layer)), [page][K=0|V=1][kvHead][slot][headDim]. */
  pool: GPUBuffer;
  /** u32 page ids of the sequence, in token order. */
  blockTable: GPUBuffer;
  numTokens: number;
  numKvHeads: number;
  numHeads: number;
  headDim: number;
  pageSize: number;
  dtype: 'f32' | 'f16';
  /**
   * Queries of the last `window` prompt tokens of this layer, after RoPE, for
   * attention-based presses: row i (position numTokens - window + i), head h,
   * dim d at buffer[i*rowStride + offset + h*headDim + d], f32.
   */
  queries?: { buffer: GPUBuffer; window: number; rowStride: number; offset: number };
  /** f32 [numKvHeads][numTokens] scores, higher = keep. */
  out: GPUBuffer;
  /** The compressible span of the sequence (tokens outside it are kept whatever the scores say); all of it when absent. */
  region?: { start: number; end: number };
  /** The block table's page ids (CPU copy), for presses that write rows (ccm). */
  blockTableIds?: readonly number[];
  /** Buffers the caller destroys once the submit has run, for per-call uploads. */
  scratch?: GPUBuffer[];
}

export interface Press {
  readonly name: string;
  /** True when encodeScores needs `ctx.queries`. */
  readonly needsQueries: boolean;
  /** Records the dispatches that write ctx.out. */
  encodeScores(ctx: ScoreContext): void;
  /**
   * Tokens it evicts from a region of `length` tokens at `ratio`, for a press
   * whose count is its own (ccm: fixed by its factor); floor(length · ratio) when absent.
   */
  evictions?(length: number, ratio: number): number;
  /**
   * Throws a RangeError naming what does not fit, for a press that takes only
   * some requests (ccm: its trained ratio, one image's tokens). `imageRuns`:
   * the runs of image tokens in the compressible region.
   */
  check?(ratio: number, region: 'image' | 'all' | 'range', imageRuns: number): void;
  /** Frees the press's scratch buffers (after the last submit that used them). */
  destroy?(): void;
}

/**
 * The score of a token a press always keeps (attention sinks, the
 * observation window): far above any real score, finite so that sums and
 * sorts stay well defined.
 */
export const KEEP_SCORE = 1e30;

/** The kernel arguments every press passes on from its context. */
export function seqArgs(ctx: ScoreContext) {
  const { pool, blockTable, numTokens, numKvHeads, headDim, pageSize, dtype, out } = ctx;
  return { pool, blockTable, numTokens, numKvHeads, headDim, pageSize, dtype, out };
}

/** The observation window of an attention-based press; throws when the caller did not supply queries. */
export function windowArgs(press: string, ctx: ScoreContext) {
  const w = ctx.queries;
  if (!w) throw new RangeError(`press '${press}': needs the window's queries (ctx.queries) but none were given`);
  return { ...seqArgs(ctx), q: w.buffer, qRowStride: w.rowStride, qOffset: w.offset, window: w.window, numHeads: ctx.numHeads };
}

/**
 * A scratch buffer owned by one press, reused by every call (dispatches run
 * in order, so layer l+1's passes start after layer l's). It only grows; a
 * replaced buffer may still be bound by a recorder not yet submitted, so it
 * is kept until destroy().
 */
export class PressScratch {
  private current: GPUBuffer | null = null;
  private retired: GPUBuffer[] = [];
  private gpu: Gpu | null = null;

  constructor(private readonly label: string) {}

  get(gpu: Gpu, bytes: number): GPUBuffer {
    if (this.current && this.current.size >= bytes) return this.current;
    if (this.current) this.retired.push(this.current);
    this.gpu = gpu;
    const size = Math.max(bytes, 2 * (this.current?.size ?? 0));
    this.current = gpu.createBuffer(`press:${this.label}`, size, storageUsage());
    return this.current;
  }

  destroy(): void {
    const all = [...this.retired, ...(this.current ? [this.current] : [])];
    all.forEach((b) => this.gpu?.destroyBuffer(b));
    this.retired = [];
    this.current = null;
  }
}
