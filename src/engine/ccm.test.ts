/**
 * FastCache's learned compressor (press 'ccm') of the shipped shapes VLM
 * against PyTorch (train/export_ccm.py): the merged K/V rows the kernel
 * computes from PyTorch's image-span K/V with the shipped weights equal
 * PyTorch's merged rows, and the engine's greedy answers with the image
 * tokens compressed after prefill equal PyTorch's CCM answers on the CI
 * subset (the first two items of each type of both test splits).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { readBuffer, storageBuffer, uploadBuffer } from '../gpu/buffers.ts';
import type { Gpu } from '../gpu/context.ts';
import { encodeKvMergeMlp } from '../gpu/kernels/kv-merge-mlp.ts';
import { encodeKvPage, type KvGeometry, kvPageElems } from '../gpu/kv-layout.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import { type CcmWeights, loadCcmWeights } from '../model/ccm-weights.ts';
import { resolveSource } from '../model/source.ts';
import { Engine } from './engine.ts';

interface CcmRef {
  factor: number;
  merged_rows: number;
  kv_item: { k_in: number[]; k_out: number[] };
  items: { split: 'old' | 'ood'; index: number; type: string; question: string; prompt_ids: number[]; greedy_ids: number[] }[];
}

const MODEL = modelRef('tiny-vlm-shapes');
/** |kernel − PyTorch| / (1 + |PyTorch|) on merged rows: f32 sums of 128 products in another order. */
const ROW_TOL = 1e-4;

let gpu: Gpu;
let engine: Engine;
let ref: CcmRef;
let kvRef: Float32Array;
let weights: CcmWeights;

beforeAll(async () => {
  gpu = await testGpu();
  engine = await Engine.load(gpu, MODEL, { kvPages: 128, pageSize: 16 });
  const src = resolveSource(MODEL);
  ref = JSON.parse(new TextDecoder().decode(await src.readFile('reference_ccm.json'))) as CcmRef;
  kvRef = new Float32Array((await src.readFile('reference_ccm_kv.f32')).slice().buffer);
  weights = (await loadCcmWeights(src, engine.config))!;
});
afterAll(() => engine.destroy());

async function image(split: 'old' | 'ood', index: number): Promise<Blob> {
  const file = split === 'old' ? `testset/test_${String(index).padStart(4, '0')}.png` : `testset-ood/ood_${String(index).padStart(4, '0')}.png`;
  const bytes = await resolveSource(MODEL).readFile(file);
  return new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' });
}

describe("press 'ccm' = PyTorch's CCM", () => {
  it('the shipped compressor is found and sized for the model', () => {
    expect(weights).not.toBeNull();
    expect(weights.factor).toBe(ref.factor);
    expect(weights.layers).toHaveLength(engine.config.numLayers);
  });

  it("merged rows from PyTorch's image-span K/V equal PyTorch's, every layer (paged pool, image span not page-aligned)", async () => {
    const c = engine.config;
    const [H, n, hd] = ref.kv_item.k_in;
    const rows = ref.kv_item.k_out[1];
    const g: KvGeometry = { numKvHeads: H, headDim: hd, pageSize: 16, dtype: 'f32' };
    const start = 11, tokens = start + n;
    const numPages = Math.ceil(tokens / g.pageSize) + 2;
    const table = Array.from({ length: Math.ceil(tokens / g.pageSize) }, (_, i) => (i * 3 + 1) % numPages); // scattered pages
    const perLayer = 2 * H * n * hd + 2 * H * rows * hd;
    let worst = 0;
    for (let l = 0; l < c.numLayers; l++) {
      const at = l * perLayer;
      const kIn = kvRef.subarray(at, at + H * n * hd), vIn = kvRef.subarray(at + H * n * hd, at + 2 * H * n * hd);
      const kOut = kvRef.subarray(at + 2 * H * n * hd, at + 2 * H * n * hd + H * rows * hd), vOut = kvRef.subarray(at + 2 * H * n * hd + H * rows * hd, at + perLayer);
      const pages = Array.from({ length: numPages }, () => ({ k: new Float32Array(kvPageElems(g)), v: new Float32Array(kvPageElems(g)) }));
      for (let t = 0; t < n; t++) {
        const seq = start + t, page = pages[table[Math.floor(seq / g.pageSize)]], slot = seq % g.pageSize;
        for (let h = 0; h < H; h++) {
          page.k.set(kIn.subarray((h * n + t) * hd, (h * n + t + 1) * hd), (h * g.pageSize + slot) * hd);
          page.v.set(vIn.subarray((h * n + t) * hd, (h * n + t + 1) * hd), (h * g.pageSize + slot) * hd);
        }
      }
      const words = pages.map((p) => encodeKvPage(g, p.k, p.v));
      const pool = new Uint32Array(words.reduce((s, w) => s + w.length, 0));
      words.forEach((w, i) => pool.set(w, i * w.length));
      const bufs = [uploadBuffer(gpu, 'pool', pool), uploadBuffer(gpu, 'table', Uint32Array.from(table)), uploadBuffer(gpu, 'w', weights.layers[l]), storageBuffer(gpu, 'out', rows * 2 * H * hd * 4)];
      const rec = new CommandRecorder(gpu);
      encodeKvMergeMlp(rec, { ...g, pool: bufs[0], blockTable: bufs[1], weights: bufs[2], out: bufs[3], factor: ref.factor, groups: Math.floor(n / ref.factor), start });
      await rec.submit();
      const got = new Float32Array(await readBuffer(gpu, bufs[3]));
      const groups = Math.floor(n / ref.factor);
      for (let gi = 0; gi < groups; gi++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < hd; d++) {
            for (const [half, want] of [[0, kOut], [1, vOut]] as const) {
              const w = want[(h * rows + gi) * hd + d];
              worst = Math.max(worst, Math.abs(got[((gi * 2 + half) * H + h) * hd + d] - w) / (1 + Math.abs(w)));
            }
          }
        }
      }
      bufs.forEach((b) => gpu.destroyBuffer(b));
    }
    expect(worst).toBeLessThan(ROW_TOL);
  });

  it('greedy answers with the image tokens compressed equal PyTorch on the CI subset of both splits; 48 of 64 image tokens evicted each', async () => {
    const before = engine.snapshot().compression;
    const compression = { press: 'ccm', ratio: 1 - 1 / ref.factor, region: 'image' as const };
    const results = await Promise.all(ref.items.map(async (it) => {
      const prompt = await engine.prepare([{ role: 'user', content: [{ type: 'image', image: await image(it.split, it.index) }, { type: 'text', text: it.question }] }]);
      expect(prompt.ids).toEqual(it.prompt_ids);
      return { it, r: await engine.generate(prompt, { maxTokens: 64, compression }) };
    }));
    for (const { it, r } of results) {
      expect(r.tokens, `${it.split} item ${it.index} (${it.type}): "${it.question}"`).toEqual(it.greedy_ids.filter((t) => !engine.tokenizer.eosTokenIds.includes(t)));
    }
    const after = engine.snapshot().compression;
    expect(after.evictedTokens - before.evictedTokens).toBe(ref.items.length * (64 - ref.merged_rows));
    expect(after.freedPages - before.freedPages).toBeGreaterThan(0);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('refuses what it was not trained for, naming it', async () => {
    const msgs = [{ role: 'user' as const, content: [{ type: 'image' as const, image: await image('old', 0) }, { type: 'text' as const, text: 'What shape is in the image?' }] }];
    await expect(engine.generate(msgs, { compression: { press: 'ccm', ratio: 0.5, region: 'image' } })).rejects.toThrow(/ratio 0\.75/);
    await expect(engine.generate(msgs, { compression: { press: 'ccm', ratio: 0.75 } })).rejects.toThrow(/region 'image'/);
  });
});
