import { describe, expect, it } from 'vitest';
import { rng, shuffled, testGpu } from '../../test/gpu.ts';
import { readBuffer, uploadBuffer, writeBuffer } from '../gpu/buffers.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import type { KvDtype } from '../gpu/kv-layout.ts';
import { kvCompactRef } from '../gpu/kernels/kv-compact.ref.ts';
import { kvSelectRef } from '../gpu/kernels/kv-select.ref.ts';
import { KvPool } from './kv-pool.ts';
import type { SeqId } from './kv-cache-manager.ts';
import { type CompactableKv, compactSequence } from './compaction.ts';

/** A block-table holder with the `truncate` KVCacheManager still lacks; records what it frees. */
class FakeKv implements CompactableKv {
  readonly tables = new Map<SeqId, { pages: number[]; tokens: number }>();
  readonly freed: number[] = [];
  readonly refs = new Map<number, number>();
  readonly pool = { refCount: (p: number) => this.refs.get(p) ?? 0 };
  constructor(readonly pageSize: number) {}
  add(seqId: SeqId, pages: number[], tokens: number): void {
    this.tables.set(seqId, { pages, tokens });
    for (const p of pages) this.refs.set(p, (this.refs.get(p) ?? 0) + 1);
  }
  blockTable(seqId: SeqId): readonly number[] {
    return this.tables.get(seqId)!.pages;
  }
  numTokens(seqId: SeqId): number {
    return this.tables.get(seqId)!.tokens;
  }
  compact(seqId: SeqId, numTokens: number): void {
    const s = this.tables.get(seqId)!;
    const gone = s.pages.splice(Math.ceil(numTokens / this.pageSize));
    this.freed.push(...gone.reverse());
    gone.forEach((p) => this.refs.set(p, this.refs.get(p)! - 1));
    s.tokens = numTokens;
  }
}

describe('compactSequence', () => {
  const cases: { dtype: KvDtype; numKvHeads: number; headDim: number; pageSize: number; numTokens: number; keeps: number[] }[] = [
    { dtype: 'f32', numKvHeads: 2, headDim: 8, pageSize: 4, numTokens: 23, keeps: [9, 1, 23] },
    { dtype: 'f16', numKvHeads: 3, headDim: 64, pageSize: 16, numTokens: 70, keeps: [17, 70] },
  ];
  for (const c of cases) {
    it(`keeps the top-k tokens bit for bit on every layer and frees the tail pages (${c.dtype}, kvHeads=${c.numKvHeads}, headDim=${c.headDim})`, async () => {
      const gpu = await testGpu();
      const r = rng(c.numTokens + c.headDim);
      const numLayers = 2, numPages = 12;
      const pool = KvPool.create(gpu, { numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, pageSize: c.pageSize, dtype: c.dtype, numPages });
      for (const keep of c.keeps) {
        // Sequence A (compacted) and B (untouched) on shuffled pages.
        const order = shuffled(numPages, r);
        const aPages = Math.ceil(c.numTokens / c.pageSize);
        const kv = new FakeKv(c.pageSize);
        kv.add('A', order.slice(0, aPages), c.numTokens);
        kv.add('B', order.slice(aPages, aPages + 3), 3 * c.pageSize);
        const tableA = [...kv.blockTable('A')];
        const before = pool.layers.map((buf) => {
          const w = Uint32Array.from({ length: buf.size / 4 }, () => Math.floor(r() * 2 ** 32));
          writeBuffer(gpu, buf, w);
          return w;
        });
        const scores = pool.layers.map(() => Float32Array.from({ length: c.numKvHeads * c.numTokens }, () => Math.floor(r() * 9) / 4));
        const gScores = scores.map((s) => uploadBuffer(gpu, 'scores', s));

        const rec = new CommandRecorder(gpu);
        const res = compactSequence(rec, { pool, kv, seqId: 'A', scoresPerLayer: gScores, keep });
        await rec.submit();
        res.release();

        const kept = Math.ceil(keep / c.pageSize);
        expect(res).toMatchObject({ numTokensBefore: c.numTokens, numTokens: keep, positionOffset: c.numTokens - keep, freedPages: tableA.slice(kept) });
        expect(kv.blockTable('A')).toEqual(tableA.slice(0, kept));
        expect(kv.numTokens('A')).toBe(keep);
        expect(kv.freed.length).toBe(aPages - kept);
        expect(kv.blockTable('B').length).toBe(3);
        for (let l = 0; l < numLayers; l++) {
          const got = new Uint32Array(await readBuffer(gpu, pool.layers[l]));
          const want = kvCompactRef(before[l], pool.geometry, tableA, kvSelectRef(scores[l], c.numKvHeads, c.numTokens, keep), keep);
          // Equal to the reference over the whole layer: kept K/V exact, B's pages and A's free tail untouched.
          expect(got, `layer ${l} keep ${keep}`).toEqual(want);
          if (keep === c.numTokens) expect(got, 'keep = numTokens leaves the cache bit-identical').toEqual(before[l]);
        }
        gScores.forEach((b) => gpu.destroyBuffer(b));
      }
      pool.destroy();
    });
  }

  it('refuses shared pages, bad keep and mismatched layers before encoding anything', async () => {
    const gpu = await testGpu();
    const pool = KvPool.create(gpu, { numLayers: 2, numKvHeads: 1, headDim: 8, pageSize: 4, dtype: 'f32', numPages: 6 });
    const kv = new FakeKv(4);
    kv.add('A', [3, 1], 6);
    kv.add('B', [3], 4); // B shares page 3 with A (a prefix-cache page)
    const s = [uploadBuffer(gpu, 's0', new Float32Array(6)), uploadBuffer(gpu, 's1', new Float32Array(6))];
    const rec = new CommandRecorder(gpu);
    expect(() => compactSequence(rec, { pool, kv, seqId: 'A', scoresPerLayer: s, keep: 2 })).toThrow(/pages \[3\] are shared/);
    kv.refs.set(3, 1);
    expect(() => compactSequence(rec, { pool, kv, seqId: 'A', scoresPerLayer: s, keep: 7 })).toThrow(/keep must be an integer in 1\.\.6/);
    expect(() => compactSequence(rec, { pool, kv, seqId: 'A', scoresPerLayer: s.slice(1), keep: 2 })).toThrow(/1 score buffers for 2 layers/);
    expect(rec.dispatches).toBe(0);
    expect(kv.freed).toEqual([]);
    await rec.submit();
    s.forEach((b) => gpu.destroyBuffer(b));
    pool.destroy();
  });
});
