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
  /** [A, B] per row (the rowMask buffer's layout); absent: no rowMask buffer at all. */
  rowMask?: number[];
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
    ...(batch.rowMask ? { rowMask: uploadBuffer(gpu, 'rowMask', Uint32Array.from(batch.rowMask)) } : {}),
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

async function checkAgainstRef(s: Shape, lens: number[], rows: Batch['rows'], seed: number, qScale = 3, rowMask?: number[]) {
  const gpu = await testGpu();
  const rand = rng(seed);
  const pool = buildPool(s, lens, rand);
  const qOffset = 5;
  const qRowStride = s.numHeads * s.headDim + 11;
  const q = randomF32(rows.length * qRowStride, rand, qScale);
  const batch: Batch = { rows, tableOrder: [...lens.keys()].reverse(), ...(rowMask ? { rowMask } : {}) };
  const got = await runKernel(gpu, s, pool, batch, q, qRowStride, qOffset);
  const want = attentionPagedRef({ q, qRowStride, qOffset, seqs: pool.seqs, rows, numHeads: s.numHeads, numKvHeads: s.numKvHeads, headDim: s.headDim, dtype: s.dtype, ...(rowMask ? { rowMask } : {}) });
  expect(maxRelErr(got, want, ATOL, RTOL)).toBeLessThanOrEqual(1);
  // The split-K path runs the same operations: bitwise equal to the single pass.
  const split = await runKernel(gpu, s, pool, batch, q, qRowStride, qOffset, 'split', Math.max(...rows.map((r) => r.pos + 1)));
  expect(bits(split)).toEqual(bits(got));
  return { got, want, pool, q, qRowStride, qOffset };
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

// ------------------------------------------------------------ row masks

/**
 * Masks [A, B) for a row at position P, by kind (16 = BLOCK, 64 = keys per
 * split); clamped to the contract A <= B <= P, so small P degrade to fewer
 * masked keys or none.
 */
const MASK_KINDS = ['none', 'empty', 'small', 'window', 'large', 'blocks', 'splits', 'noSinks', 'lastOnly', 'sinksAndLast'] as const;
type MaskKind = (typeof MASK_KINDS)[number];

function maskFor(kind: MaskKind, P: number, rand: () => number): [number, number] {
  const r = (n: number) => Math.floor(rand() * n);
  const [a, b] = ((): [number, number] => {
    switch (kind) {
      case 'none': return [0, 0];
      case 'empty': { const a = r(P + 1); return [a, a]; } // A = B: nothing masked
      case 'small': { const a = r(P + 1); return [a, a + 1 + r(3)]; }
      case 'window': return [4, P + 1 - 32]; // StreamingLLM: 4 sinks + the 32 most recent
      case 'large': return [1 + r(4), P - r(8)]; // most keys masked
      case 'blocks': { const a = 16 * (1 + r(2)); return [a, a + 16 * (1 + r(3))]; } // whole blocks inside a split
      case 'splits': { const a = 64 * r(2); return [a, a + 64 * (1 + r(3))]; } // whole splits, the first one too
      case 'noSinks': return [0, P - 1 - r(40)]; // A = 0
      case 'lastOnly': return [0, P]; // only key P visible
      case 'sinksAndLast': return [1 + r(3), P]; // B = P
    }
  })();
  const B = Math.min(Math.max(b, 0), P);
  return [Math.min(a, B), B];
}

const masksFor = (rows: Batch['rows'], kinds: readonly MaskKind[], rand: () => number) =>
  rows.flatMap((row, i) => maskFor(kinds[i % kinds.length], row.pos, rand));

describe('attention_paged kernel with a row mask', () => {
  const shapes: Shape[] = [
    { headDim: 6, numHeads: 4, numKvHeads: 2, pageSize: 1, dtype: 'f32' }, // trailing pair only + one quad, page size 1
    { headDim: 6, numHeads: 3, numKvHeads: 1, pageSize: 7, dtype: 'f16' },
    { headDim: 8, numHeads: 4, numKvHeads: 4, pageSize: 16, dtype: 'f32' },
    { headDim: 10, numHeads: 6, numKvHeads: 2, pageSize: 3, dtype: 'f32' },
    { headDim: 32, numHeads: 4, numKvHeads: 1, pageSize: 2, dtype: 'f16' },
    { headDim: 64, numHeads: 8, numKvHeads: 2, pageSize: 5, dtype: 'f16' },
    { headDim: 128, numHeads: 6, numKvHeads: 2, pageSize: 16, dtype: 'f32' },
  ];
  const lens = [1, 15, 16, 17, 65, 100, 300, 600];
  for (const s of shapes) {
    const name = `headDim=${s.headDim} heads=${s.numHeads}/${s.numKvHeads} page=${s.pageSize} ${s.dtype}`;
    it(`decode batch, every mask kind on every context (${lens.join(',')}): GPU = reference, main = split bitwise: ${name}`, async () => {
      const rand = rng(s.headDim * 17 + s.pageSize);
      const rows = lens.flatMap((n, seq) => MASK_KINDS.map(() => ({ seq, pos: n - 1 })));
      await checkAgainstRef(s, lens, rows, s.headDim * 3 + s.pageSize, 3, masksFor(rows, MASK_KINDS, rand));
    });
    it(`prefill chunk (positions 100..139 of one sequence, mask kinds cycling): GPU = reference, main = split bitwise: ${name}`, async () => {
      const rand = rng(s.headDim * 19 + s.pageSize);
      const rows = Array.from({ length: 40 }, (_, i) => ({ seq: 1, pos: 100 + i }));
      await checkAgainstRef(s, [23, 140], rows, s.headDim * 5 + s.pageSize, 3, masksFor(rows, MASK_KINDS, rand));
    });
  }

  it('the same rolling window on every row of a long prefill chunk (whole blocks and splits masked)', async () => {
    const s: Shape = { headDim: 64, numHeads: 4, numKvHeads: 2, pageSize: 16, dtype: 'f16' };
    const rows = Array.from({ length: 48 }, (_, i) => ({ seq: 0, pos: 500 + i }));
    await checkAgainstRef(s, [560, 9], rows, 123, 3, masksFor(rows, ['window'], rng(1)));
  });

  it('an empty mask (A = B on every row) gives bitwise the unmasked result, in both paths', async () => {
    const gpu = await testGpu();
    const s: Shape = { headDim: 10, numHeads: 4, numKvHeads: 2, pageSize: 5, dtype: 'f16' };
    const rand = rng(77);
    const lens = [1, 16, 70, 300];
    const pool = buildPool(s, lens, rand);
    const rows = decodeRows(lens);
    const span = s.numHeads * s.headDim;
    const q = randomF32(rows.length * span, rand, 3);
    const rowMask = rows.flatMap((r) => maskFor('empty', r.pos, rand));
    for (const mode of ['main', 'split'] as const) {
      const plain = await runKernel(gpu, s, pool, { rows }, q, span, 0, mode, 300);
      const masked = await runKernel(gpu, s, pool, { rows, rowMask }, q, span, 0, mode, 300);
      expect(bits(masked)).toEqual(bits(plain));
    }
  });

  it('only key P visible (A = 0, B = P) gives exactly V_P', async () => {
    const s: Shape = { headDim: 6, numHeads: 2, numKvHeads: 1, pageSize: 4, dtype: 'f32' };
    const lens = [1, 64, 65, 200];
    const rows = decodeRows(lens);
    const { got, pool } = await checkAgainstRef(s, lens, rows, 31, 3, rows.flatMap((r) => maskFor('lastOnly', r.pos, rng(0))));
    rows.forEach((r, i) => {
      const vP = pool.seqs[r.seq].v.subarray(r.pos * s.headDim, (r.pos + 1) * s.headDim); // one kv head
      for (let h = 0; h < s.numHeads; h++) {
        expect(Array.from(got.subarray((i * s.numHeads + h) * s.headDim, (i * s.numHeads + h + 1) * s.headDim))).toEqual(Array.from(vP));
      }
    });
  });

  it('is batch invariant with masks: a masked row alone and inside a batch with other masks give bitwise equal results', async () => {
    const gpu = await testGpu();
    const s: Shape = { headDim: 64, numHeads: 4, numKvHeads: 2, pageSize: 16, dtype: 'f32' };
    const rand = rng(4242);
    const lens = [600, 17, 130];
    const pool = buildPool(s, lens, rand);
    const span = s.numHeads * s.headDim;
    const rows = [...decodeRows(lens), ...Array.from({ length: 12 }, (_, i) => ({ seq: 0, pos: 580 + i }))];
    const rowMask = masksFor(rows, MASK_KINDS, rand);
    const q = randomF32(rows.length * span, rand, 3);
    for (const mode of ['main', 'split'] as const) {
      const all = await runKernel(gpu, s, pool, { rows, rowMask, tableOrder: [2, 0, 1] }, q, span, 0, mode, 700);
      for (const at of [0, 2, 5, 9]) {
        const alone = await runKernel(gpu, s, pool, { rows: [rows[at]], rowMask: rowMask.slice(2 * at, 2 * at + 2) }, q.slice(at * span, (at + 1) * span), span, 0, mode, rows[at].pos + 1);
        expect(bits(all.subarray(at * span, (at + 1) * span))).toEqual(bits(alone));
      }
    }
  });

  it('matches a hand-checked case: the masked middle key is left out (3/4, 1/4), and only the last key gives V_2', async () => {
    const gpu = await testGpu();
    // One head, headDim 2, scale 1, q = (ln 3, 0); keys k0 = (1,0), k1 = (5,5), k2 = (0,1); values v0 = (1,2), v1 = (100,100), v2 = (3,4).
    // Row 0 masks [1, 2): scores ln 3, 0 over keys 0, 2 → 3/4·(1,2) + 1/4·(3,4) = (1.5, 2.5) (key 1 alone would weigh ~e^5).
    // Row 1 masks [0, 2): only key 2 → exactly (3, 4).
    // pageSize 2, one kv head: a page is [K s0 | K s1 | V s0 | V s1]; keys 0, 1 on page 2, key 2 on page 0, page 1 is NaN (never read).
    const pool = new Float32Array([0, 1, NaN, NaN, 3, 4, NaN, NaN, ...Array(8).fill(NaN), 1, 0, 5, 5, 1, 2, 100, 100]);
    const bufs = {
      q: uploadBuffer(gpu, 'q', new Float32Array([Math.log(3), 0, Math.log(3), 0])),
      blockTables: uploadBuffer(gpu, 'tables', new Uint32Array([2, 0])),
      rowInfo: uploadBuffer(gpu, 'rowInfo', new Uint32Array([0, 2, 0, 2])),
      rowMask: uploadBuffer(gpu, 'rowMask', new Uint32Array([1, 2, 0, 2])),
      pool: uploadBuffer(gpu, 'pool', pool),
      out: storageBuffer(gpu, 'out', 16),
      partials: storageBuffer(gpu, 'partials', attentionSplitScratchBytes(2, 1, 2, 3)),
    };
    const args = { ...bufs, qRowStride: 2, qOffset: 0, nq: 2, numHeads: 1, numKvHeads: 1, headDim: 2, pageSize: 2, dtype: 'f32' as const, scale: 1 };
    for (const mode of ['main', 'split'] as const) {
      const rec = new CommandRecorder(gpu);
      if (mode === 'main') encodeAttentionPaged(rec, args);
      else encodeAttentionPagedSplit(rec, { ...args, maxContext: 3 });
      await rec.submit();
      const out = await readF32(gpu, bufs.out);
      expect(out[0]).toBeCloseTo(1.5, 6);
      expect(out[1]).toBeCloseTo(2.5, 6);
      expect(Array.from(out.subarray(2))).toEqual([3, 4]);
    }
    // The reference agrees.
    const k = new Float32Array([1, 0, 5, 5, 0, 1]), v = new Float32Array([1, 2, 100, 100, 3, 4]);
    const ref = attentionPagedRef({ q: new Float32Array([Math.log(3), 0, Math.log(3), 0]), qRowStride: 2, qOffset: 0, seqs: [{ k, v }], rows: [{ seq: 0, pos: 2 }, { seq: 0, pos: 2 }], numHeads: 1, numKvHeads: 1, headDim: 2, dtype: 'f32', scale: 1, rowMask: [1, 2, 0, 2] });
    expect(ref[0]).toBeCloseTo(1.5, 6);
    expect(ref[1]).toBeCloseTo(2.5, 6);
    expect(Array.from(ref.subarray(2))).toEqual([3, 4]);
    Object.values(bufs).forEach((b) => gpu.destroyBuffer(b));
  });

  it('rejects a rowMask that is too small or aliases out/partials, and the reference rejects masks outside A <= B <= pos', async () => {
    const gpu = await testGpu();
    const b = storageBuffer(gpu, 'b', 4096);
    const tiny = storageBuffer(gpu, 'tiny', 8);
    const partials = storageBuffer(gpu, 'partials', 4096);
    const out = storageBuffer(gpu, 'out', 4096);
    const base = { q: b, qRowStride: 64, qOffset: 0, blockTables: b, rowInfo: b, pool: b, out: b, nq: 2, numHeads: 4, numKvHeads: 2, headDim: 16, pageSize: 4, dtype: 'f32' as const };
    const rec = new CommandRecorder(gpu);
    expect(() => encodeAttentionPaged(rec, { ...base, rowMask: tiny })).toThrow(/'rowMask' holds 8 bytes but the call needs 16/);
    expect(() => encodeAttentionPaged(rec, { ...base, rowMask: b })).toThrow(/rowMask and out must be different buffers/);
    expect(() => encodeAttentionPagedSplit(rec, { ...base, out, rowMask: partials, maxContext: 10, partials })).toThrow(/rowMask and partials must be different buffers/);
    [b, tiny, partials, out].forEach((x) => gpu.destroyBuffer(x));
    const ref = { q: new Float32Array(2), qRowStride: 2, qOffset: 0, seqs: [{ k: new Float32Array(6), v: new Float32Array(6) }], rows: [{ seq: 0, pos: 2 }], numHeads: 1, numKvHeads: 1, headDim: 2, dtype: 'f32' as const };
    expect(() => attentionPagedRef({ ...ref, rowMask: [2, 1] })).toThrow(/row 0 mask \[2, 1\) must satisfy/);
    expect(() => attentionPagedRef({ ...ref, rowMask: [0, 3] })).toThrow(/must satisfy 0 <= A <= B <= pos = 2/);
  });
});
