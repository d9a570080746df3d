import type { Gpu } from '../gpu/context.ts';
import { readBuffer, storageUsage, writeBuffer } from '../gpu/buffers.ts';
import { assertKvGeometry, decodeKvPage, type KvDtype, type KvGeometry, type KvPageValues, kvPageBytes, kvPageWords } from '../gpu/kv-layout.ts';

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
 * One layer's buffer is `numPages` pages back to back, each
 * `[K=0|V=1][kvHead][slot][rowWords]` u32 words; the page format (diagram,
 * f16 packing, `encodeKvPage`/`decodeKvPage`) lives in src/gpu/kv-layout.ts.
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
  get geometry(): KvGeometry {
    return { numKvHeads: this.numKvHeads, headDim: this.headDim, pageSize: this.pageSize, dtype: this.dtype };
  }

  /** Reads one page of one layer back (tests, debugging): K and V as f32 [kvHead][slot][headDim]. */
  async readPage(l: number, page: number): Promise<KvPageValues> {
    this.checkPage('readPage', page);
    return decodeKvPage(this.geometry, await this.readPageWords(l, page));
  }

  /** The raw words of one page of one layer, as the kernels see them (kvPageWords(geometry) u32). */
  async readPageWords(l: number, page: number): Promise<Uint32Array> {
    this.checkPage('readPageWords', page);
    return new Uint32Array(await readBuffer(this.gpu, this.layer(l), page * this.layerPageBytes, this.layerPageBytes));
  }

  /**
   * Overwrites one page of one layer with raw words (e.g. from encodeKvPage or
   * readPageWords). Queued on the device queue, so work submitted after this
   * call sees the new contents.
   */
  writePageWords(l: number, page: number, words: Uint32Array): void {
    this.checkPage('writePageWords', page);
    const want = kvPageWords(this.geometry);
    if (words.length !== want) throw new RangeError(`KvPool.writePageWords: words has ${words.length} u32 words but a page is ${want}`);
    writeBuffer(this.gpu, this.layer(l), words, page * this.layerPageBytes);
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

  private checkPage(method: string, page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.numPages) throw new RangeError(`KvPool.${method}: page ${page} is not in 0..${this.numPages - 1}`);
  }
}
