import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32, maxRelErr } from '../../../test/gpu.ts';
import type { Gpu } from '../context.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { attentionSplitScratchBytes, encodeAttentionPaged, encodeAttentionPagedSplit } from './attention-paged.ts';
import { attentionPagedRef, type RefSequence } from './attention-paged.ref.ts';
import type { KvDtype, KvGeometry } from '../kv-layout.ts';
import { encodeKvPool, kvImagePageElems, kvWriteRef } from './kv-write.ref.ts';

// Tolerance: the kernel computes in f32 (online softmax, keys in blocks of 16),
// the reference in f64 over the same (f16-rounded, for f16 KV) K/V values, so
// f16 storage adds no error of its own here: |gpu - ref| <= 1e-5 + 1e-4·|ref|
// (SwiftShader measures within 1e-6 + 2e-5·|ref|; the slack is for GPUs with coarser exp).
const ATOL = 1e-5;
const RTOL = 1e-4;

interface Shape {
  headDim: number;
  numHeads: number;
  numKvHeads: number;
  pageSize: number;
  dtype: KvDtype;
}

/**
 * A pool holding `lens.length` sequences on shuffled, non-contiguous pages
 * (plus spare pages), every slot not written by a sequence holding NaN so
 * that reading past a row's context shows up in the output.
 */
function buildPool(s: Shape, lens: number[], rand: () => number) {
  const g: KvGeometry = { numKvHeads: s.numKvHeads, headDim: s.headDim, pageSize: s.pageSize, dtype: s.dtype };
  const pagesPer = lens.map((n) => Math.ceil(n / s.pageSize));
  const numPages = pagesPer.reduce((a, b) => a + b, 0) + 3;
  const order = Array.from({ length: numPages }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const image = new Float32Array(numPages * kvImagePageElems(g)).fill(NaN);
  const seqs: RefSequence[] = [];
  const tables: number[][] = [];
  let next = 0;
  lens.forEach((n, i) => {
    const table = order.slice(next, next + pagesPer[i]);
    next += pagesPer[i];
    const span = s.numKvHeads * s.headDim;
    const k = randomF32(n * span, rand), v = randomF32(n * span, rand);
    const src = new Float32Array(n * 2 * span);
    for (let t = 0; t < n; t++) {
      src.set(k.subarray(t * span, (t + 1) * span), t * 2 * span);
      src.set(v.subarray(t * span, (t + 1) * span), t * 2 * span + span);
    }
    const slots = Uint32Array.from({ length: n }, (_, t) => table[Math.floor(t / s.pageSize)] * s.pageSize + (t % s.pageSize));
    kvWriteRef(image, src, slots, { ...g, n, rowStride: 2 * span, kOffset: 0, vOffset: span });
    seqs.push({ k, v });
    tables.push(table);
  });
  return { words: encodeKvPool(image, g), seqs, tables };
}

interface Batch {
  rows: { seq: number; pos: number }[];
  /** Order in which the sequences' tables are concatenated in blockTables. */
  tableOrder?: number[];
}

type Mode = 'main' | 'split';

/**
 * Runs the kernel (single pass, or split-K with `maxContext` reserved) for `batch`
 * over `pool`; q rows padded inside a wider row (qOffset/qRowStride like a fused qkv).
 */
async function runKernel(gpu: Gpu, s: Shape, pool: ReturnType<typeof buildPool>, batch: Batch, q: Float32Array, qRowStride: number, qOffset: number, mode: Mode = 'main', maxContext = 0) {
  const order = batch.tableOrder ?? pool.tables.map((_, i) => i);
  const offsets = new Map<number, number>();
  const flat: number[] = [];
  for (const i of order) {
    offsets.set(i, flat.length);
    flat.push(...pool.tables[i]);
  }
  const rowInfo = new Uint32Array(batch.rows.flatMap((r) => [offsets.get(r.seq)!, r.pos]));
  const nq = batch.rows.length;
  const bufs = {
    q: uploadBuffer(gpu, 'q', q),
    blockTables: uploadBuffer(gpu, 'tables', Uint32Array.from(flat)),
    rowInfo: uploadBuffer(gpu, 'rowInfo', rowInfo),
    pool: uploadBuffer(gpu, 'pool', pool.words),
    out: storageBuffer(gpu, 'out', nq * s.numHeads * s.headDim * 4),
  };
  const rec = new CommandRecorder(gpu);
  const partials = mode === 'split' ? storageBuffer(gpu, 'partials', attentionSplitScratchBytes(nq, s.numHeads, s.headDim, maxContext)) : null;
  if (partials) {
    encodeAttentionPagedSplit(rec, { ...bufs, ...s, nq, qRowStride, qOffset, maxContext, partials });
  } else {
    encodeAttentionPaged(rec, { ...bufs, ...s, nq, qRowStride, qOffset });
  }
  await rec.submit();
  const out = await readF32(gpu, bufs.out);
  [...Object.values(bufs), ...(partials ? [partials] : [])].forEach((b) => gpu.destroyBuffer(b));
  return out;
}

async function checkAgainstRef(s: Shape, lens: number[], rows: Batch['rows'], seed: number, qScale = 3) {
  const gpu = await testGpu();
  const rand = rng(seed);
  const pool = buildPool(s, lens, rand);
  const qOffset = 5;
  const qRowStride = s.numHeads * s.headDim + 11;
  const q = randomF32(rows.length * qRowStride, rand, qScale);
  const batch = { rows, tableOrder: [...lens.keys()].reverse() };
  const got = await runKernel(gpu, s, pool, batch, q, qRowStride, qOffset);
  const want = attentionPagedRef({ q, qRowStride, qOffset, seqs: pool.seqs, rows, numHeads: s.numHeads, numKvHeads: s.numKvHeads, headDim: s.headDim, dtype: s.dtype });
  expect(maxRelErr(got, want, ATOL, RTOL)).toBeLessThanOrEqual(1);
  // The split-K path runs the same operations: bitwise equal to the single pass.
  const split = await runKernel(gpu, s, pool, batch, q, qRowStride, qOffset, 'split', Math.max(...rows.map((r) => r.pos + 1)));
  expect(bits(split)).toEqual(bits(got));
}

const bits = (a: Float32Array) => new Uint32Array(a.slice().buffer);

const DECODE_LENS = [1, 15, 16, 17, 100, 600];
const decodeRows = (lens: number[]) => lens.map((n, i) => ({ seq: i, pos: n - 1 }));

describe('attention_paged kernel', () => {
  const shapes: Shape[] = [
    { headDim: 8, numHeads: 4, numKvHeads: 4, pageSize: 16, dtype: 'f32' }, // GQA 1
    { headDim: 64, numHeads: 4, numKvHeads: 2, pageSize: 16, dtype: 'f16' }, // GQA 2
    { headDim: 128, numHeads: 6, numKvHeads: 2, pageSize: 16, dtype: 'f32' }, // GQA 3
    { headDim: 64, numHeads: 8, numKvHeads: 2, pageSize: 5, dtype: 'f32' }, // GQA 4, odd page size
    { headDim: 10, numHeads: 3, numKvHeads: 1, pageSize: 16, dtype: 'f16' }, // odd pair count
    { headDim: 128, numHeads: 4, numKvHeads: 1, pageSize: 16, dtype: 'f16' },
  ];
  for (const s of shapes) {
    const name = `headDim=${s.headDim} heads=${s.numHeads}/${s.numKvHeads} page=${s.pageSize} ${s.dtype}`;
    it(`decode batch of ${DECODE_LENS.length} sequences (contexts ${DECODE_LENS.join(',')}) matches the reference: ${name}`, async () => {
      await checkAgainstRef(s, DECODE_LENS, decodeRows(DECODE_LENS), s.headDim * 7 + s.numHeads);
    });
    it(`prefill chunk (positions 37..56 of a 60-token sequence) matches the reference: ${name}`, async () => {
      const rows = Array.from({ length: 20 }, (_, i) => ({ seq: 1, pos: 37 + i }));
      await checkAgainstRef(s, [23, 60], rows, s.headDim * 13 + s.numHeads);
    });
  }

  it('handles headDim 256 (the maximum) in f16 and f32', async () => {
    for (const dtype of ['f16', 'f32'] as const) {
      const s: Shape = { headDim: 256, numHeads: 2, numKvHeads: 1, pageSize: 16, dtype };
      await checkAgainstRef(s, [40, 3], [{ seq: 0, pos: 39 }, { seq: 1, pos: 2 }, { seq: 0, pos: 20 }], 256);
    }
  });

  it('is batch invariant: a row alone and inside batches gives bitwise equal results', async () => {
    const gpu = await testGpu();
    const s: Shape = { headDim: 64, numHeads: 6, numKvHeads: 2, pageSize: 16, dtype: 'f16' };
    const rand = rng(99);
    const lens = [600, 17, 1, 100, 33];
    const pool = buildPool(s, lens, rand);
    const span = s.numHeads * s.headDim;
    const qOf = new Map<string, Float32Array>();
    const qRow = (seq: number, pos: number) => {
      const key = `${seq}:${pos}`;
      if (!qOf.has(key)) qOf.set(key, randomF32(span, rand, 3));
      return qOf.get(key)!;
    };
    // Split mode reserves splits for the batch's longest row (or more): that must not matter either.
    let mode: Mode = 'main';
    const run = async (rows: Batch['rows'], tableOrder: number[]) => {
      const q = new Float32Array(rows.length * span);
      rows.forEach((r, i) => q.set(qRow(r.seq, r.pos), i * span));
      return runKernel(gpu, s, pool, { rows, tableOrder }, q, span, 0, mode, Math.max(...rows.map((r) => r.pos + 1)) + (rows.length > 1 ? 100 : 0));
    };
    const probes = [{ seq: 0, pos: 599 }, { seq: 3, pos: 57 }, { seq: 2, pos: 0 }];
    // A decode batch of all five sequences, a prefill chunk of sequence 0 around the probe,
    // and a large mixed batch (more than one workgroup) with the probes in the middle.
    const batches: { rows: Batch['rows']; order: number[] }[] = [
      { rows: decodeRows(lens), order: [4, 3, 2, 1, 0] },
      { rows: Array.from({ length: 9 }, (_, i) => ({ seq: 0, pos: 591 + i })), order: [1, 0] },
      { rows: [...decodeRows(lens), ...Array.from({ length: 30 }, (_, i) => ({ seq: 3, pos: 40 + i })), ...decodeRows(lens).reverse()], order: [2, 0, 1, 3, 4] },
    ];
    for (const m of ['main', 'split'] as const) {
      mode = m;
      for (const probe of probes) {
        const alone = await run([probe], [probe.seq]);
        for (const b of batches) {
          const at = b.rows.findIndex((r) => r.seq === probe.seq && r.pos === probe.pos);
          if (at < 0) continue;
          const all = await run(b.rows, b.order);
          expect(bits(all.subarray(at * span, (at + 1) * span))).toEqual(bits(alone));
        }
      }
    }
  });

  it('matches a hand-checked case: weights 3/4, 1/4', async () => {
    const gpu = await testGpu();
    // One head, headDim 2, keys (1,0) and (0,1); q = (ln 3, 0), scale 1 → scores ln 3, 0 → softmax 3/4, 1/4.
    // Values (1,2) and (3,4) → out = 3/4·(1,2) + 1/4·(3,4) = (1.5, 2.5). Page 1 holds both tokens.
    // pageSize 2, one kv head: a page is 2·1·2·2 = 8 floats [K t0 | K t1 | V t0 | V t1]; page 0 is NaN (never read).
    const pool = new Float32Array([NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN, 1, 0, 0, 1, 1, 2, 3, 4]);
    const bufs = {
      q: uploadBuffer(gpu, 'q', new Float32Array([Math.log(3), 0])),
      blockTables: uploadBuffer(gpu, 'tables', new Uint32Array([1])),
      rowInfo: uploadBuffer(gpu, 'rowInfo', new Uint32Array([0, 1])),
      pool: uploadBuffer(gpu, 'pool', pool),
      out: storageBuffer(gpu, 'out', 8),
    };
    const rec = new CommandRecorder(gpu);
    encodeAttentionPaged(rec, { ...bufs, qRowStride: 2, qOffset: 0, nq: 1, numHeads: 1, numKvHeads: 1, headDim: 2, pageSize: 2, dtype: 'f32', scale: 1 });
    await rec.submit();
    const out = await readF32(gpu, bufs.out);
    expect(out[0]).toBeCloseTo(1.5, 6);
    expect(out[1]).toBeCloseTo(2.5, 6);
    Object.values(bufs).forEach((b) => gpu.destroyBuffer(b));
  });

  it('split-K marks rows whose context exceeds the reserved splits with NaN, and leaves the others intact', async () => {
    const gpu = await testGpu();
    const s: Shape = { headDim: 8, numHeads: 2, numKvHeads: 1, pageSize: 16, dtype: 'f32' };
    const pool = buildPool(s, [200, 30], rng(5));
    const rows = [{ seq: 0, pos: 199 }, { seq: 1, pos: 29 }];
    const q = randomF32(2 * 16, rng(6));
    const out = await runKernel(gpu, s, pool, { rows }, q, 16, 0, 'split', 64); // one split reserved: row 0 needs 4
    expect(Array.from(out.subarray(0, 16)).every(Number.isNaN)).toBe(true);
    const want = await runKernel(gpu, s, pool, { rows }, q, 16, 0, 'main');
    expect(bits(out.subarray(16))).toEqual(bits(want.subarray(16)));
  });

  it('rejects bad shapes with a message naming the problem', async () => {
    const gpu = await testGpu();
    const b = storageBuffer(gpu, 'b', 4096);
    const base = { q: b, qRowStride: 64, qOffset: 0, blockTables: b, rowInfo: b, pool: b, out: b, nq: 1, numHeads: 4, numKvHeads: 2, headDim: 16, pageSize: 4, dtype: 'f32' as const };
    const rec = new CommandRecorder(gpu);
    expect(() => encodeAttentionPaged(rec, { ...base, numKvHeads: 3 })).toThrow(/numHeads \(4\) must be a multiple of numKvHeads \(3\)/);
    expect(() => encodeAttentionPaged(rec, { ...base, headDim: 15, qRowStride: 60 })).toThrow(/headDim must be even/);
    expect(() => encodeAttentionPaged(rec, { ...base, headDim: 258, qRowStride: 1032 })).toThrow(/at most 256/);
    expect(() => encodeAttentionPaged(rec, { ...base, nq: 100 })).toThrow(/'q' holds 4096 bytes/);
    expect(() => encodeAttentionPaged(rec, { ...base, nq: 2, qRowStride: 32 })).toThrow(/qRowStride 32 is smaller/);
    const small = storageBuffer(gpu, 'small', 4096);
    expect(() => encodeAttentionPagedSplit(rec, { ...base, maxContext: 1000, partials: small })).toThrow(/'partials' holds 4096 bytes but the call needs 4608/);
    gpu.destroyBuffer(small);
    expect(() => encodeAttentionPagedSplit(rec, { ...base, maxContext: 10, partials: b })).toThrow(/partials and out must be different buffers/);
    gpu.destroyBuffer(b);
  });
});
