import { describe, expect, it } from 'vitest';
import { testGpu, rng, randomF32, maxRelErr } from '../../test/gpu.ts';
import { uploadBuffer, storageBuffer, readF32 } from '../gpu/buffers.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import { encodeKvWrite } from '../gpu/kernels/kv-write.ts';
import { roundF16 } from '../gpu/kernels/kv-write.ref.ts';
import { encodeAttentionPaged } from '../gpu/kernels/attention-paged.ts';
import { attentionPagedRef } from '../gpu/kernels/attention-paged.ref.ts';
import { KvPool } from './kv-pool.ts';
import { KVCacheManager } from './kv-cache-manager.ts';
import { BlockPool } from './block-pool.ts';
import { packAttentionBatch, type BatchRows } from './attention-batch.ts';

describe('KvPool', () => {
  it('allocates one buffer per layer, sized by pages or by a byte budget', async () => {
    const gpu = await testGpu();
    const before = gpu.memory.snapshot().byLabel.kv ?? 0;
    const a = KvPool.create(gpu, { numLayers: 3, numKvHeads: 2, headDim: 8, dtype: 'f32', numPages: 10 });
    expect([a.pageSize, a.layerPageBytes, a.bytesPerPage]).toEqual([16, 2 * 2 * 16 * 8 * 4, 3 * 2 * 2 * 16 * 8 * 4]);
    expect(a.layers.length).toBe(3);
    expect(a.layer(2).size).toBe(10 * a.layerPageBytes);
    expect((gpu.memory.snapshot().byLabel.kv ?? 0) - before).toBe(a.totalBytes);
    const b = KvPool.create(gpu, { numLayers: 2, numKvHeads: 1, headDim: 8, pageSize: 4, dtype: 'f16', capacityBytes: 1000 });
    expect(b.layerPageBytes).toBe(2 * 4 * 4 * 4); // 8 halves = 4 words per token-head
    expect(b.numPages).toBe(Math.floor(1000 / (2 * 128)));
    expect(b.debugString()).toMatch(/KvPool layers=2 kvHeads=1 headDim=8 dtype=f16 pageSize=4 pages=3/);
    a.destroy();
    b.destroy();
    expect(gpu.memory.snapshot().byLabel.kv ?? 0).toBe(before);
  });

  it('refuses pools the adapter cannot bind, saying how many pages fit', async () => {
    const gpu = await testGpu();
    const shape = { numLayers: 1, numKvHeads: 8, headDim: 128, dtype: 'f32' as const };
    const pageBytes = 2 * 8 * 16 * 128 * 4;
    const fit = Math.floor(Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize) / pageBytes);
    expect(() => KvPool.create(gpu, { ...shape, numPages: fit + 1 })).toThrow(new RegExp(`at most ${fit} pages fit \\(${fit * 16} tokens\\)`));
    expect(() => KvPool.create(gpu, { ...shape, capacityBytes: 100 })).toThrow(/capacityBytes 100 holds no page/);
    expect(() => KvPool.create(gpu, { ...shape, headDim: 7, dtype: 'f16', numPages: 1 })).toThrow(/headDim must be even for f16/);
    expect(() => KvPool.create(gpu, { ...shape, numLayers: 0, numPages: 1 })).toThrow(/numLayers must be a positive integer/);
  });

  for (const dtype of ['f32', 'f16'] as const) {
    it(`serves a prefill chunk then decode steps of three sequences end to end (${dtype})`, async () => {
      const gpu = await testGpu();
      const g = { numLayers: 2, numKvHeads: 2, headDim: 16, pageSize: 4, dtype };
      const numHeads = 4;
      const pool = KvPool.create(gpu, { ...g, numPages: 40 });
      const kv = new KVCacheManager(new BlockPool(pool.numPages), pool.pageSize);
      const rand = rng(dtype === 'f16' ? 2 : 1);
      const qDim = numHeads * g.headDim, kvDim = g.numKvHeads * g.headDim, rowStride = qDim + 2 * kvDim;
      const hist = new Map<string, { k: number[]; v: number[] }[]>(); // per seq, per layer: contiguous K/V so far

      // One forward step for `rows` of fused [q | k | v] activations: write K/V of every layer, then attend.
      const step = async (rows: BatchRows[]) => {
        for (const r of rows) expect(kv.allocateSlots(r.seqId, r.count)).toBe(true);
        const b = packAttentionBatch(kv, rows);
        const qkv = randomF32(b.nq * rowStride, rand, 2);
        const bufs = {
          qkv: uploadBuffer(gpu, 'qkv', qkv),
          slots: uploadBuffer(gpu, 'slots', b.slots),
          tables: uploadBuffer(gpu, 'tables', b.blockTables),
          rowInfo: uploadBuffer(gpu, 'rowInfo', b.rowInfo),
        };
        const outs = Array.from({ length: g.numLayers }, () => storageBuffer(gpu, 'out', b.nq * qDim * 4));
        const rec = new CommandRecorder(gpu);
        for (let l = 0; l < g.numLayers; l++) {
          encodeKvWrite(rec, { ...pool.geometry, src: bufs.qkv, slots: bufs.slots, pool: pool.layer(l), n: b.nq, rowStride, kOffset: qDim, vOffset: qDim + kvDim });
          encodeAttentionPaged(rec, { ...pool.geometry, q: bufs.qkv, qRowStride: rowStride, qOffset: 0, blockTables: bufs.tables, rowInfo: bufs.rowInfo, pool: pool.layer(l), out: outs[l], nq: b.nq, numHeads });
        }
        await rec.submit();
        const got = await Promise.all(outs.map((o) => readF32(gpu, o)));
        [...Object.values(bufs), ...outs].forEach((x) => gpu.destroyBuffer(x));

        // Reference: append K/V to contiguous histories, then attend row by row.
        let q0 = 0;
        for (const r of rows) {
          const h = hist.get(String(r.seqId)) ?? Array.from({ length: g.numLayers }, () => ({ k: [], v: [] }));
          hist.set(String(r.seqId), h);
          for (let i = 0; i < r.count; i++) {
            const row = qkv.subarray((q0 + i) * rowStride, (q0 + i + 1) * rowStride);
            for (const lh of h) {
              lh.k.push(...row.subarray(qDim, qDim + kvDim));
              lh.v.push(...row.subarray(qDim + kvDim));
            }
          }
          q0 += r.count;
        }
        const seqIds = [...new Set(rows.map((r) => String(r.seqId)))];
        const refRows = rows.flatMap((r) => Array.from({ length: r.count }, (_, i) => ({ seq: seqIds.indexOf(String(r.seqId)), pos: r.start + i })));
        for (let l = 0; l < g.numLayers; l++) {
          const seqs = seqIds.map((id) => ({ k: Float32Array.from(hist.get(id)![l].k), v: Float32Array.from(hist.get(id)![l].v) }));
          const want = attentionPagedRef({ q: qkv, qRowStride: rowStride, qOffset: 0, seqs, rows: refRows, numHeads, numKvHeads: g.numKvHeads, headDim: g.headDim, dtype });
          expect(maxRelErr(got[l], want, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        }
      };

      await step([{ seqId: 'a', start: 0, count: 11 }]); // prefill chunk of a
      await step([{ seqId: 'b', start: 0, count: 6 }, { seqId: 'a', start: 11, count: 1 }]); // b's prefill beside a's decode
      await step([{ seqId: 'c', start: 0, count: 1 }, { seqId: 'b', start: 6, count: 1 }, { seqId: 'a', start: 12, count: 1 }]);
      for (let t = 0; t < 3; t++) {
        await step([{ seqId: 'a', start: 13 + t, count: 1 }, { seqId: 'b', start: 7 + t, count: 1 }, { seqId: 'c', start: 1 + t, count: 1 }]);
      }
      kv.checkInvariants();

      // readPage: token 9 of 'a' sits in page table[2] at offset 1; compare with its history in layer 1.
      const page = kv.blockTable('a')[2];
      const { k, v } = await pool.readPage(1, page);
      const rd = dtype === 'f16' ? roundF16 : (x: number) => x;
      const hA = hist.get('a')![1];
      for (let head = 0; head < g.numKvHeads; head++) {
        for (let d = 0; d < g.headDim; d++) {
          const at = (head * g.pageSize + 1) * g.headDim + d;
          expect(k[at]).toBe(Math.fround(rd(hA.k[9 * kvDim + head * g.headDim + d])));
          expect(v[at]).toBe(Math.fround(rd(hA.v[9 * kvDim + head * g.headDim + d])));
        }
      }

      for (const id of kv.sequenceIds()) kv.free(id);
      expect(kv.pool.numFree).toBe(pool.numPages);
      pool.destroy();
    });
  }
});
