import { packF16, unpackF16 } from './f16.ts';
import { assertPositiveInt } from './kernels/guards.ts';

/**
 * The KV pool's page format, in one place: what a layer's pool buffer holds,
 * word by word. The kernels address it through `kvRowStart` in
 * shaders/kv_layout.wgsl; `kvRowStart` below is its twin, and
 * `encodeKvPage`/`decodeKvPage` convert one page to and from values, so CPU
 * code (readback, tests, a future CPU tier) never re-derives the format.
 *
 * One layer's GPUBuffer is `numPages` pages back to back, page p at word
 * p·kvPageWords(g). Page ids mean the same page in every layer.
 *
 *   page p: kvPageWords = 2·H·S·rowWords u32 words  (H = numKvHeads, S = pageSize)
 *   ┌───────────── K (half 0) ─────────────┬───────────── V (half 1) ─────────────┐
 *   │ head 0: [slot 0][slot 1]…[slot S-1]  │ head 0: [slot 0][slot 1]…[slot S-1]  │
 *   │ head 1: [slot 0]…                    │ head 1: [slot 0]…                    │
 *   │ …                                    │ …                                    │
 *   │ head H-1: …                          │ head H-1: …                          │
 *   └──────────────────────────────────────┴──────────────────────────────────────┘
 *   = [page][K=0|V=1][kvHead][slot][rowWords]
 *
 *   one slot (row) = rowWords u32 words:
 *     f32: rowWords = headDim,   word d = the bits of element d
 *     f16: rowWords = headDim/2, word i = pack2x16float(element 2i, element 2i+1)
 *                                (2i in bits 0..15, 2i+1 in bits 16..31, round to nearest even)
 *
 *   kvRowStart(page, half, head, slot) = (((page·2 + half)·numKvHeads + head)·pageSize + slot)·rowWords
 *
 * Token t of a sequence lives in page `table[t / pageSize]`, slot `t % pageSize`.
 */

export type KvDtype = 'f32' | 'f16';

/** Shape of one layer's paged KV buffer: `[page][K=0|V=1][kvHead][slot][headDim]`. */
export interface KvGeometry {
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  dtype: KvDtype;
}

/** One page of one layer as values: K and V each f32 [kvHead][slot][headDim]. */
export interface KvPageValues {
  k: Float32Array;
  v: Float32Array;
}

/** u32 words one token of one kv head takes (f16 packs two halves per word). */
export function kvRowWords(g: Pick<KvGeometry, 'headDim' | 'dtype'>): number {
  return g.dtype === 'f16' ? g.headDim / 2 : g.headDim;
}

/**
 * First u32 word of the row of (page, half: 0 = K | 1 = V, kv head, slot in
 * the page); the TypeScript twin of `kvRowStart` in shaders/kv_layout.wgsl.
 */
export function kvRowStart(page: number, half: 0 | 1, head: number, offset: number, g: KvGeometry): number {
  return (((page * 2 + half) * g.numKvHeads + head) * g.pageSize + offset) * kvRowWords(g);
}

/** u32 words one page takes in one layer's buffer (K and V of all kv heads). */
export function kvPageWords(g: KvGeometry): number {
  return 2 * g.numKvHeads * g.pageSize * kvRowWords(g);
}

/** Bytes one page takes in one layer's buffer; page p starts at byte p·kvPageBytes(g). */
export function kvPageBytes(g: KvGeometry): number {
  return kvPageWords(g) * 4;
}

/** Elements (values, not words) of K, or of V, in one page: numKvHeads·pageSize·headDim. */
export function kvPageElems(g: KvGeometry): number {
  return g.numKvHeads * g.pageSize * g.headDim;
}

/** Throws a RangeError naming the problem unless `g` is a geometry the paged kernels take. */
export function assertKvGeometry(kernel: string, g: KvGeometry): void {
  assertPositiveInt(kernel, { numKvHeads: g.numKvHeads, headDim: g.headDim, pageSize: g.pageSize });
  if (g.dtype !== 'f32' && g.dtype !== 'f16') throw new RangeError(`${kernel}: dtype must be 'f32' or 'f16', got '${String(g.dtype)}'`);
  if (g.dtype === 'f16' && g.headDim % 2 !== 0) throw new RangeError(`${kernel}: headDim must be even for f16 KV (two halves per u32), got ${g.headDim}`);
}

/**
 * The words of one page (what the pool buffer holds there) from its K and V
 * values. f32 keeps every bit (NaN payloads too); f16 rounds to nearest even,
 * as the kernels' pack2x16float does.
 */
export function encodeKvPage(g: KvGeometry, k: Float32Array, v: Float32Array): Uint32Array {
  const fn = 'encodeKvPage';
  assertKvGeometry(fn, g);
  const elems = kvPageElems(g);
  for (const [name, a] of [['k', k], ['v', v]] as const) {
    if (a.length !== elems) {
      throw new RangeError(`${fn}: ${name} has ${a.length} elements but a page holds numKvHeads*pageSize*headDim = ${elems}`);
    }
  }
  const words = new Uint32Array(kvPageWords(g));
  const half = words.length / 2;
  words.set(g.dtype === 'f16' ? packF16(k) : bitsOf(k), 0);
  words.set(g.dtype === 'f16' ? packF16(v) : bitsOf(v), half);
  return words;
}

/** K and V values of one page from its words (exact: every f16 is an f32). */
export function decodeKvPage(g: KvGeometry, words: Uint32Array): KvPageValues {
  const fn = 'decodeKvPage';
  assertKvGeometry(fn, g);
  const want = kvPageWords(g);
  if (words.length !== want) throw new RangeError(`${fn}: words has ${words.length} u32 words but a page is ${want} (kvPageWords)`);
  const half = want / 2;
  const decode = (w: Uint32Array) => (g.dtype === 'f16' ? unpackF16(w) : new Float32Array(w.slice().buffer));
  return { k: decode(words.subarray(0, half)), v: decode(words.subarray(half)) };
}

// ---------------------------------------------------------------- helpers

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

