import { uploadBuffer, writeBuffer } from '../../gpu/buffers.ts';
import type { Gpu } from '../../gpu/context.ts';
import { encodeKvMergeMlp } from '../../gpu/kernels/kv-merge-mlp.ts';
import { encodeKvWrite } from '../../gpu/kernels/kv-write.ts';
import { type Press, PressScratch, type ScoreContext } from './press.ts';

/**
 * CCM: FastCache's learned compressor (`--comp_mode ccm`). Unlike the
 * selection presses it writes new K/V rows: in each layer, each group of
 * `factor` consecutive tokens of the region (the image tokens, where it was
 * trained) becomes one merged row per kv head, through the layer's key and
 * value MLPs (kernel: shaders/kv_merge_mlp.wgsl). The merged rows are written
 * over the region's first slots (kv_write), and the scores this press
 * returns keep exactly those slots, the remainder of fewer than `factor`
 * tokens and everything outside the region, so the stage's usual top-k +
 * compaction moves them to the front and frees the pages — the same path as
 * every press.
 *
 * Positions: keys are cached after RoPE, so a merged key is a learned vector
 * in that rotated space with no position of its own; tokens after the image
 * keep their true RoPE positions through the evicted-token offset, as with
 * the selection presses (train/ccm.py trains it in exactly this setting).
 */
export class CcmPress implements Press {
  readonly name = 'ccm';
  readonly needsQueries = false;
  private readonly weights: GPUBuffer[];
  private readonly merged = new PressScratch('ccm_merged');
  private last: CcmSequence | null = null;

  constructor(
    private readonly gpu: Gpu,
    layers: readonly Float32Array[],
    readonly factor: number,
  ) {
    this.weights = layers.map((w, l) => uploadBuffer(gpu, `ccm:layer${l}`, w));
  }

  /** Its trained setting only: the image tokens of one image, at ratio 1 − 1/factor. */
  check(ratio: number, region: 'image' | 'all' | 'range', imageRuns: number): void {
    const trained = 1 - 1 / this.factor;
    if (region !== 'image') throw new RangeError(`press 'ccm' compresses image tokens only (it was trained on them): use region 'image'`);
    if (imageRuns !== 1) throw new RangeError(`press 'ccm' merges one image's tokens; this prompt has ${imageRuns} images in the region: ask about one image per request`);
    if (Math.abs(ratio - trained) > 1e-9) throw new RangeError(`press 'ccm' merges ${this.factor} tokens into 1, i.e. ratio ${trained}; ask ratio ${trained} (got ${ratio})`);
  }

  /** Tokens of a region of `length` it evicts: (factor − 1) per whole group. */
  evictions(length: number): number {
    return Math.floor(length / this.factor) * (this.factor - 1);
  }

  encodeScores(ctx: ScoreContext): void {
    const { rec, numKvHeads, headDim, pageSize, dtype, pool, blockTable } = ctx;
    const seq = this.sequence(ctx);
    writeBuffer(this.gpu, ctx.out, seq.scores);
    if (!seq.slots) return;
    const rowFloats = 2 * numKvHeads * headDim;
    const out = this.merged.get(this.gpu, seq.groups * rowFloats * 4);
    encodeKvMergeMlp(rec, { numKvHeads, headDim, pageSize, dtype, pool, blockTable, weights: this.weights[ctx.layer], out, factor: this.factor, groups: seq.groups, start: seq.start });
    encodeKvWrite(rec, { numKvHeads, headDim, pageSize, dtype, src: out, slots: seq.slots, pool, n: seq.groups, rowStride: rowFloats, kOffset: 0, vOffset: numKvHeads * headDim });
  }

  /**
   * What every layer of one sequence shares (the stage encodes its layers in a row, with one block
   * table buffer): the keep/evict scores and the slots the merged rows go to. A sequence gets its
   * own slots buffer: queue writes land before the submit, so one buffer reused across the
   * sequences of a submit would hold the last one's slots.
   */
  private sequence(ctx: ScoreContext): CcmSequence {
    if (this.last?.blockTable === ctx.blockTable) return this.last;
    const region = ctx.region ?? { start: 0, end: ctx.numTokens };
    const groups = Math.floor((region.end - region.start) / this.factor);
    const n = ctx.numTokens;
    const keepUntil = region.start + groups, evictUntil = region.start + groups * this.factor;
    const row = Float32Array.from({ length: n }, (_, t) => (t < keepUntil || t >= evictUntil ? 1 : 0));
    const scores = new Float32Array(ctx.numKvHeads * n);
    for (let h = 0; h < ctx.numKvHeads; h++) scores.set(row, h * n);
    let slots: GPUBuffer | null = null;
    if (groups > 0) {
      const table = ctx.blockTableIds, scratch = ctx.scratch;
      if (!table || !scratch) throw new RangeError("press 'ccm': needs the block table's page ids and a scratch list (ctx.blockTableIds, ctx.scratch)");
      const P = ctx.pageSize;
      slots = uploadBuffer(this.gpu, 'ccm:slots', Uint32Array.from({ length: groups }, (_, g) => table[Math.floor((region.start + g) / P)] * P + ((region.start + g) % P)));
      scratch.push(slots);
    }
    this.last = { blockTable: ctx.blockTable, start: region.start, groups, scores, slots };
    return this.last;
  }

  destroy(): void {
    this.weights.forEach((b) => this.gpu.destroyBuffer(b));
    this.merged.destroy();
    this.last = null;
  }
}

interface CcmSequence {
  blockTable: GPUBuffer;
  start: number;
  groups: number;
  /** f32 [numKvHeads][numTokens]: 1 = keep (merged rows, remainder, outside the region), 0 = evict. */
  scores: Float32Array;
  /** u32 pool slots of the region's first `groups` tokens (null without a whole group). */
  slots: GPUBuffer | null;
}
