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
    const region = ctx.region ?? { start: 0, end: ctx.numTokens };
    const groups = Math.floor((region.end - region.start) / this.factor);
    const { rec, numKvHeads, headDim, pageSize, dtype, pool, blockTable } = ctx;
    const scores = new Float32Array(numKvHeads * ctx.numTokens);
    const keepUntil = region.start + groups, evictUntil = region.start + groups * this.factor;
    for (let h = 0; h < numKvHeads; h++) {
      for (let t = 0; t < ctx.numTokens; t++) scores[h * ctx.numTokens + t] = t < keepUntil || t >= evictUntil ? 1 : 0;
    }
    writeBuffer(this.gpu, ctx.out, scores);
    if (groups === 0) return;
    const rowFloats = 2 * numKvHeads * headDim;
    const out = this.merged.get(this.gpu, groups * rowFloats * 4);
    encodeKvMergeMlp(rec, { numKvHeads, headDim, pageSize, dtype, pool, blockTable, weights: this.weights[ctx.layer], out, factor: this.factor, groups, start: region.start });
    const table = ctx.blockTableIds, scratch = ctx.scratch;
    if (!table || !scratch) throw new RangeError("press 'ccm': needs the block table's page ids and a scratch list (ctx.blockTableIds, ctx.scratch)");
    // a buffer per call: queue writes land before the submit, so one shared buffer would hold the last request's slots
    const slots = uploadBuffer(this.gpu, 'ccm:slots', Uint32Array.from({ length: groups }, (_, g) => {
      const t = region.start + g;
      return table[Math.floor(t / pageSize)] * pageSize + (t % pageSize);
    }));
    scratch.push(slots);
    encodeKvWrite(rec, { numKvHeads, headDim, pageSize, dtype, src: out, slots, pool, n: groups, rowStride: rowFloats, kOffset: 0, vOffset: numKvHeads * headDim });
  }

  destroy(): void {
    this.weights.forEach((b) => this.gpu.destroyBuffer(b));
    this.merged.destroy();
  }
}
