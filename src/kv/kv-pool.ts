import type { Gpu } from '../gpu/context.ts';
import { readBuffer, storageUsage } from '../gpu/buffers.ts';
import { f16BitsToF32 } from '../gpu/f16.ts';
import { assertKvGeometry, type KvDtype, kvPageBytes } from '../gpu/kernels/kv-write.ts';

interface KvPoolShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Tokens per page (default 16). */
  pageSize?: number;
  dtype: KvDtype;
}

/** Size the pool by page count or by a byte budget over all layers (numPages = floor(capacityBytes / bytesPerPage)). */
export type KvPoolOptions = KvPoolShape & ({ numPages: number } | { capacityBytes: number });

/**
 * KvPool: the GPU memory of the paged KV cache. Allocated once: per layer,
 * one GPUBuffer holding all `numPages` pages; page ids come from BlockPool
 * and mean the same page in every layer.
 *
 * One layer's buffer, u32 words (f32 bits, or f16 pairs packed with
 * pack2x16float: element 2i low half, 2i+1 high half):
 *
 *   page 0                                  page 1
 *   ┌──────────────────────────────────────┬──────────── …
 *   │ K: head 0 [slot 0..pageSize) × rowW  │
 *   │    head 1 …                          │
 *   │ V: head 0 [slot 0..pageSize) × rowW  │
 *   │    head 1 …                          │
 *   └──────────────────────────────────────┴──────────── …
 *   = [page][K=0|V=1][kvHead][slot][rowWords],  rowWords = headDim (f32) or headDim/2 (f16)
 *
 * Memory labels are `kv:layer<l>`, so `gpu.memory.snapshot().byLabel.kv`
 * is the pool's total.
 */
export class KvPool {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly pageSize: number;
  readonly dtype: KvDtype;
  readonly numPages: number;
  /** Bytes one page takes in one layer's buffer. */
  readonly layerPageBytes: number;
  private buffers: GPUBuffer[];

  private constructor(
    private readonly gpu: Gpu,
    shape: Required<KvPoolShape>,
    numPages: number,
  ) {
    ({ numLayers: this.numLayers, numKvHeads: this.numKvHeads, headDim: this.headDim, pageSize: this.pageSize, dtype: this.dtype } = shape);
    this.numPages = numPages;
    this.layerPageBytes = kvPageBytes(shape);
    this.buffers = [];
    try {
      for (let l = 0; l < this.numLayers; l++) {
        this.buffers.push(gpu.createBuffer(`kv:layer${l}`, numPages * this.layerPageBytes, storageUsage()));
      }
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  // ---------------------------------------------------------------- public API

  /** Allocates the pool. Throws a RangeError (saying how many pages would fit) when a layer's buffer exceeds the adapter's limits. */
  static create(gpu: Gpu, options: KvPoolOptions): KvPool {
    const shape: Required<KvPoolShape> = {
      numLayers: options.numLayers,
      numKvHeads: options.numKvHeads,
      headDim: options.headDim,
      pageSize: options.pageSize ?? 16,
      dtype: options.dtype,
    };
    assertKvGeometry('KvPool', shape);
    if (!Number.isInteger(shape.numLayers) || shape.numLayers <= 0) throw new RangeError(`KvPool: numLayers must be a positive integer, got ${shape.numLayers}`);
    const layerPageBytes = kvPageBytes(shape);
    const numPages = 'numPages' in options ? options.numPages : Math.floor(options.capacityBytes / (layerPageBytes * shape.numLayers));
    if (!Number.isInteger(numPages) || numPages <= 0) {
      const why = 'numPages' in options ? `numPages must be a positive integer, got ${options.numPages}` : `capacityBytes ${options.capacityBytes} holds no page (one page is ${layerPageBytes * shape.numLayers} bytes over ${shape.numLayers} layers)`;
      throw new RangeError(`KvPool: ${why}`);
    }
    const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    const maxPages = Math.floor(limit / layerPageBytes);
    if (numPages > maxPages) {
      throw new RangeError(
        `KvPool: ${numPages} pages need ${numPages * layerPageBytes} bytes per layer but this adapter binds at most ${limit} bytes per buffer; at most ${maxPages} pages fit (${maxPages * shape.pageSize} tokens)`,
      );
    }
    return new KvPool(gpu, shape, numPages);
  }

  /** The buffer of layer `l` (bind it whole as the kernels' `pool`). */
  layer(l: number): GPUBuffer {
    if (!Number.isInteger(l) || l < 0 || l >= this.buffers.length) throw new RangeError(`KvPool.layer: layer ${l} is not in 0..${this.buffers.length - 1}`);
    return this.buffers[l];
  }

  /** All layers' buffers, layer order. */
  get layers(): readonly GPUBuffer[] {
    return this.buffers;
  }

  /** Bytes one page takes over all layers (what a capacity budget divides by). */
  get bytesPerPage(): number {
    return this.layerPageBytes * this.numLayers;
  }

  get totalBytes(): number {
    return this.bytesPerPage * this.numPages;
  }

  /** The geometry the kernels take (spread it into encodeKvWrite / encodeAttentionPaged args). */
  get geometry(): { numKvHeads: number; headDim: number; pageSize: number; dtype: KvDtype } {
    return { numKvHeads: this.numKvHeads, headDim: this.headDim, pageSize: this.pageSize, dtype: this.dtype };
  }

  /** Reads one page of one layer back (tests, debugging): K and V as f32 [kvHead][slot][headDim]. */
  async readPage(l: number, page: number): Promise<{ k: Float32Array; v: Float32Array }> {
    if (!Number.isInteger(page) || page < 0 || page >= this.numPages) throw new RangeError(`KvPool.readPage: page ${page} is not in 0..${this.numPages - 1}`);
    const words = new Uint32Array(await readBuffer(this.gpu, this.layer(l), page * this.layerPageBytes, this.layerPageBytes));
    const half = words.length / 2;
    return { k: this.decode(words.subarray(0, half)), v: this.decode(words.subarray(half)) };
  }

  destroy(): void {
    this.buffers.forEach((b) => this.gpu.destroyBuffer(b));
    this.buffers = [];
  }

  debugString(): string {
    const mib = (b: number) => (b / 2 ** 20).toFixed(2);
    return (
      `KvPool layers=${this.numLayers} kvHeads=${this.numKvHeads} headDim=${this.headDim} dtype=${this.dtype} ` +
      `pageSize=${this.pageSize} pages=${this.numPages} page=${this.bytesPerPage} B (all layers) total=${mib(this.totalBytes)} MiB` +
      (this.buffers.length ? '' : ' [destroyed]')
    );
  }

  // ---------------------------------------------------------------- helpers

  private decode(words: Uint32Array): Float32Array {
    if (this.dtype === 'f32') return new Float32Array(words.slice().buffer);
    const out = new Float32Array(words.length * 2);
    for (let i = 0; i < words.length; i++) {
      out[2 * i] = f16BitsToF32(words[i] & 0xffff);
      out[2 * i + 1] = f16BitsToF32(words[i] >>> 16);
    }
    return out;
  }
}
