import { describe, expect, it } from 'vitest';
import checkSource from '../../shaders/kv_layout_check.wgsl?raw';
import kvLayout from '../../shaders/kv_layout.wgsl?raw';
import { testGpu, rng, randomF32, maxRelErr } from '../../test/gpu.ts';
import { readBuffer, readU32, storageBuffer, uploadBuffer } from './buffers.ts';
import { CommandRecorder } from './recorder.ts';
import { Uniforms } from './uniforms.ts';
import { f16BitsToF32, f32ToF16Bits, roundToF16 } from './f16.ts';
import { decodeKvPage, encodeKvPage, type KvGeometry, kvPageBytes, kvPageElems, kvPageWords, kvRowStart, kvRowWords } from './kv-layout.ts';
import { encodeKvWrite } from './kernels/kv-write.ts';
import { kvImageIndex } from './kernels/kv-write.ref.ts';
import { encodeAttentionPaged } from './kernels/attention-paged.ts';
import { attentionPagedRef } from './kernels/attention-paged.ref.ts';
import { KvPool } from '../kv/kv-pool.ts';

const WG = 64;

function shuffled(n: number, rand: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const int = (rand: () => number, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

function randomGeometry(rand: () => number): KvGeometry {
  const dtype = rand() < 0.5 ? 'f16' : 'f32';
  const headDim = dtype === 'f16' ? 2 * int(rand, 1, 128) : int(rand, 1, 256);
  return { numKvHeads: int(rand, 1, 9), headDim, pageSize: int(rand, 1, 64), dtype };
}

/** Element (head, slot, d) of K or V in a page's values ([kvHead][slot][headDim]). */
const at = (g: KvGeometry, head: number, slot: number, d: number) => (head * g.pageSize + slot) * g.headDim + d;

describe('kv-layout', () => {
  it('kvRowStart equals the WGSL kvRowStart on random inputs', async () => {
    const gpu = await testGpu();
    const rand = rng(7);
    const cases: { page: number; half: 0 | 1; head: number; offset: number; g: KvGeometry }[] = [];
    while (cases.length < 1000) {
      const g = randomGeometry(rand);
      const c = { page: int(rand, 0, 1 << 14), half: (rand() < 0.5 ? 0 : 1) as 0 | 1, head: int(rand, 0, g.numKvHeads - 1), offset: int(rand, 0, g.pageSize - 1), g };
      if (cases.length < 4) Object.assign(c, { page: cases.length < 2 ? 0 : 1 << 14, offset: cases.length % 2 ? g.pageSize - 1 : 0 });
      // kvRowStart is exact in TS; keep inputs where the shader's u32 arithmetic cannot wrap
      if (kvRowStart(c.page, 1, c.g.numKvHeads - 1, c.g.pageSize - 1, c.g) + kvRowWords(c.g) < 2 ** 32) cases.push(c);
    }
    const args = Uint32Array.from(cases.flatMap((c) => [c.page, c.half, c.head, c.offset, c.g.numKvHeads, c.g.pageSize, kvRowWords(c.g)]));
    const src = uploadBuffer(gpu, 'kv-layout-args', args);
    const out = storageBuffer(gpu, 'kv-layout-out', cases.length * 4);
    const rec = new CommandRecorder(gpu, 'kv-layout-check');
    rec.dispatch(gpu.pipelines.get('kv_layout_check', checkSource + kvLayout, { WG }), [src, out], new Uniforms().u32(cases.length), Math.ceil(cases.length / WG));
    await rec.submit();
    const got = await readU32(gpu, out, 0, cases.length);
    expect(Array.from(got)).toEqual(cases.map((c) => kvRowStart(c.page, c.half, c.head, c.offset, c.g)));
    // …and the reference image index (f32: one word per element), and one hand-checked row.
    for (const c of cases.slice(0, 100)) {
      const f32 = { ...c.g, dtype: 'f32' as const };
      expect(kvRowStart(c.page, c.half, c.head, c.offset, f32)).toBe(kvImageIndex(f32, c.page, c.half, c.head, c.offset, 0));
    }
    // page 1, V, head 2 of 3, slot 4 of 5, headDim 6 f16 (3 words): (((1*2+1)*3+2)*5+4)*3
    expect(kvRowStart(1, 1, 2, 4, { numKvHeads: 3, headDim: 6, pageSize: 5, dtype: 'f16' })).toBe(177);
    [src, out].forEach((b) => gpu.destroyBuffer(b));
  });

  const writeCases: (KvGeometry & { numPages: number; n: number })[] = [
    { numKvHeads: 3, headDim: 10, pageSize: 5, dtype: 'f32', numPages: 4, n: 13 },
    { numKvHeads: 5, headDim: 7, pageSize: 3, dtype: 'f32', numPages: 6, n: 11 },
    { numKvHeads: 3, headDim: 10, pageSize: 5, dtype: 'f16', numPages: 4, n: 13 },
    { numKvHeads: 1, headDim: 6, pageSize: 7, dtype: 'f16', numPages: 5, n: 20 },
    { numKvHeads: 5, headDim: 64, pageSize: 3, dtype: 'f16', numPages: 6, n: 17 },
  ];
  for (const c of writeCases) {
    it(`decodeKvPage reads back exactly what kv_write wrote: ${c.dtype} kvHeads=${c.numKvHeads} headDim=${c.headDim} pageSize=${c.pageSize}`, async () => {
      const gpu = await testGpu();
      const rand = rng(c.n * 13 + c.headDim);
      const span = c.numKvHeads * c.headDim;
      const src = randomF32(c.n * 2 * span, rand, 3); // rows [K heads | V heads]
      const slots = Uint32Array.from(shuffled(c.numPages * c.pageSize, rand).slice(0, c.n));
      const gSrc = uploadBuffer(gpu, 'src', src), gSlots = uploadBuffer(gpu, 'slots', slots);
      const gPool = storageBuffer(gpu, 'pool', c.numPages * kvPageBytes(c)); // zeroed
      const rec = new CommandRecorder(gpu);
      encodeKvWrite(rec, { ...c, src: gSrc, slots: gSlots, pool: gPool, rowStride: 2 * span, kOffset: 0, vOffset: span });
      await rec.submit();
      const words = new Uint32Array(await readBuffer(gpu, gPool));

      const stored = (x: number) => (c.dtype === 'f16' ? f16BitsToF32(f32ToF16Bits(x)) : x);
      const want = Array.from({ length: c.numPages }, () => ({ k: new Float32Array(kvPageElems(c)), v: new Float32Array(kvPageElems(c)) }));
      slots.forEach((slot, r) => {
        const page = want[Math.floor(slot / c.pageSize)];
        for (let h = 0; h < c.numKvHeads; h++) {
          for (let d = 0; d < c.headDim; d++) {
            page.k[at(c, h, slot % c.pageSize, d)] = stored(src[r * 2 * span + h * c.headDim + d]);
            page.v[at(c, h, slot % c.pageSize, d)] = stored(src[r * 2 * span + span + h * c.headDim + d]);
          }
        }
      });
      const pw = kvPageWords(c);
      for (let p = 0; p < c.numPages; p++) {
        const got = decodeKvPage(c, words.subarray(p * pw, (p + 1) * pw));
        expect(got.k, `page ${p} K`).toEqual(want[p].k);
        expect(got.v, `page ${p} V`).toEqual(want[p].v);
      }
      [gSrc, gSlots, gPool].forEach((b) => gpu.destroyBuffer(b));
    });
  }

  for (const dtype of ['f32', 'f16'] as const) {
    it(`pages from encodeKvPage are what KvPool.readPage and attention_paged read (${dtype})`, async () => {
      const gpu = await testGpu();
      const rand = rng(dtype === 'f16' ? 31 : 30);
      const g: KvGeometry = { numKvHeads: 3, headDim: 8, pageSize: 5, dtype };
      const numHeads = 6;
      const pool = KvPool.create(gpu, { numLayers: 2, ...g, numPages: 7 });
      // One sequence of 13 tokens on pages [5, 2, 6] of layer 1; every slot holds random values.
      const table = [5, 2, 6];
      const len = 13;
      const pages = table.map(() => ({ k: randomF32(kvPageElems(g), rand), v: randomF32(kvPageElems(g), rand) }));
      table.forEach((page, i) => pool.writePageWords(1, page, encodeKvPage(g, pages[i].k, pages[i].v)));

      const words = await pool.readPageWords(1, table[1]);
      expect(words).toEqual(encodeKvPage(g, pages[1].k, pages[1].v));
      const back = await pool.readPage(1, table[2]);
      const stored = dtype === 'f16' ? roundToF16 : (a: Float32Array) => a;
      expect(back.k).toEqual(stored(pages[2].k));
      expect(back.v).toEqual(stored(pages[2].v));

      // Contiguous [token][kvHead][headDim] K/V of the sequence for the reference.
      const span = g.numKvHeads * g.headDim;
      const seq = { k: new Float32Array(len * span), v: new Float32Array(len * span) };
      for (let t = 0; t < len; t++) {
        const p = pages[Math.floor(t / g.pageSize)];
        for (let h = 0; h < g.numKvHeads; h++) {
          for (let d = 0; d < g.headDim; d++) {
            seq.k[t * span + h * g.headDim + d] = p.k[at(g, h, t % g.pageSize, d)];
            seq.v[t * span + h * g.headDim + d] = p.v[at(g, h, t % g.pageSize, d)];
          }
        }
      }
      const positions = [0, 4, 5, 9, 12];
      const qRowStride = numHeads * g.headDim;
      const q = randomF32(positions.length * qRowStride, rand);
      const bufs = {
        q: uploadBuffer(gpu, 'q', q),
        tables: uploadBuffer(gpu, 'tables', Uint32Array.from(table)),
        rowInfo: uploadBuffer(gpu, 'rowInfo', Uint32Array.from(positions.flatMap((p) => [0, p]))),
        out: storageBuffer(gpu, 'out', positions.length * qRowStride * 4),
      };
      const rec = new CommandRecorder(gpu);
      encodeAttentionPaged(rec, { ...pool.geometry, q: bufs.q, qRowStride, qOffset: 0, blockTables: bufs.tables, rowInfo: bufs.rowInfo, pool: pool.layer(1), out: bufs.out, nq: positions.length, numHeads });
      await rec.submit();
      const got = new Float32Array(await readBuffer(gpu, bufs.out));
      const want = attentionPagedRef({ q, qRowStride, qOffset: 0, seqs: [seq], rows: positions.map((pos) => ({ seq: 0, pos })), numHeads, numKvHeads: g.numKvHeads, headDim: g.headDim, dtype });
      expect(maxRelErr(got, want, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      Object.values(bufs).forEach((b) => gpu.destroyBuffer(b));
      pool.destroy();
    });
  }

  it('encodeKvPage and decodeKvPage round-trip, pack f16 pairs low half first, and keep f32 bits', () => {
    const rand = rng(3);
    for (const g of [
      { numKvHeads: 3, headDim: 7, pageSize: 5, dtype: 'f32' },
      { numKvHeads: 2, headDim: 10, pageSize: 3, dtype: 'f16' },
      { numKvHeads: 1, headDim: 2, pageSize: 1, dtype: 'f16' },
    ] as KvGeometry[]) {
      const k = randomF32(kvPageElems(g), rand, 100), v = randomF32(kvPageElems(g), rand, 100);
      const words = encodeKvPage(g, k, v);
      expect(words.length).toBe(kvPageWords(g));
      expect(words.byteLength).toBe(kvPageBytes(g));
      const back = decodeKvPage(g, words);
      expect(back.k).toEqual(g.dtype === 'f16' ? roundToF16(k) : k);
      expect(back.v).toEqual(g.dtype === 'f16' ? roundToF16(v) : v);
      expect(encodeKvPage(g, back.k, back.v)).toEqual(words); // decoded values are representable: words come back bit for bit
    }
    // f16: element 2i in the low half; (head 1, slot 1) of K starts at kvRowStart(0, 0, 1, 1).
    const g: KvGeometry = { numKvHeads: 2, headDim: 2, pageSize: 2, dtype: 'f16' };
    const k = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const words = encodeKvPage(g, k, k.map((x) => -x));
    expect(words[kvRowStart(0, 0, 1, 1, g)]).toBe(0x48004700); // f16(8) << 16 | f16(7)
    expect(words[kvRowStart(0, 1, 0, 0, g)]).toBe(0xc000bc00); // f16(-2) << 16 | f16(-1)
    expect(encodeKvPage(g, Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11, 0, 0, 0, 0, 0, 0), new Float32Array(8))[0]).toBe(0x3c023c00); // ties to even
    // f32: a NaN payload survives both ways.
    const f: KvGeometry = { numKvHeads: 1, headDim: 1, pageSize: 1, dtype: 'f32' };
    const nan = new Float32Array(new Uint32Array([0x7fc01234]).buffer);
    const nw = encodeKvPage(f, nan, Float32Array.of(-0));
    expect(Array.from(nw)).toEqual([0x7fc01234, 0x80000000]);
    expect(new Uint32Array(decodeKvPage(f, nw).k.buffer)[0]).toBe(0x7fc01234);
  });

  it('rejects bad shapes with a RangeError naming the problem', async () => {
    const g: KvGeometry = { numKvHeads: 2, headDim: 4, pageSize: 3, dtype: 'f16' };
    const ok = new Float32Array(kvPageElems(g));
    expect(() => encodeKvPage(g, new Float32Array(23), ok)).toThrow(new RangeError('encodeKvPage: k has 23 elements but a page holds numKvHeads*pageSize*headDim = 24'));
    expect(() => encodeKvPage(g, ok, new Float32Array(25))).toThrow(/encodeKvPage: v has 25 elements/);
    expect(() => decodeKvPage(g, new Uint32Array(25))).toThrow(new RangeError('decodeKvPage: words has 25 u32 words but a page is 24 (kvPageWords)'));
    expect(() => decodeKvPage({ ...g, dtype: 'f32' }, new Uint32Array(24))).toThrow(/decodeKvPage: words has 24 u32 words but a page is 48/);
    expect(() => encodeKvPage({ ...g, headDim: 3 }, ok, ok)).toThrow(/encodeKvPage: headDim must be even for f16/);
    expect(() => decodeKvPage({ ...g, pageSize: 0 }, new Uint32Array(0))).toThrow(/decodeKvPage: pageSize must be a positive integer/);
    expect(() => encodeKvPage({ ...g, dtype: 'bf16' as 'f16' }, ok, ok)).toThrow(/dtype must be 'f32' or 'f16', got 'bf16'/);

    const gpu = await testGpu();
    const pool = KvPool.create(gpu, { numLayers: 1, ...g, numPages: 2 });
    expect(() => pool.writePageWords(0, 0, new Uint32Array(23))).toThrow(/KvPool.writePageWords: words has 23 u32 words but a page is 24/);
    expect(() => pool.writePageWords(0, 2, new Uint32Array(24))).toThrow(/KvPool.writePageWords: page 2 is not in 0..1/);
    expect(() => pool.writePageWords(1, 0, new Uint32Array(24))).toThrow(/KvPool.layer: layer 1 is not in 0..0/);
    await expect(pool.readPage(0, -1)).rejects.toThrow(/KvPool.readPage: page -1 is not in 0..1/);
    pool.destroy();
  });
});
