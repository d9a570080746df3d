/**
 * The trained shapes VLM (public/models/tiny-vlm-shapes) against PyTorch, an
 * independent implementation: for a CI subset of each held-out split (the
 * first two items of each question type of testset/ and of the
 * out-of-distribution testset-ood/, whose pictures of several sizes the
 * processor resizes), the engine's prompt ids equal the training pipeline's,
 * its greedy answer ids equal PyTorch's greedy ids, and its first-step logits
 * agree with PyTorch's (top-20 values, and the whole vocabulary for the items
 * whose full logits are shipped), in Node and in browsers alike: the engine
 * resizes with its own port of Pillow (src/model/image-resample.ts), the
 * resize PyTorch's pixels come from. The benchmark (`npm run bench -- vqa`)
 * checks the whole splits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from './engine.ts';
import { resolveSource } from '../model/source.ts';
import type { Gpu } from '../gpu/context.ts';

interface RefItem {
  index: number;
  type: string;
  question: string;
  prompt_ids: number[];
  greedy_ids: number[];
  first_top20_ids: number[];
  first_top20_logits: number[];
}

const MODEL = modelRef('tiny-vlm-shapes');
/** |engine − PyTorch| on first-step logits (f32 GPU vs f32 CPU over ~100 positions; logits are O(10)). */
const LOGIT_TOL = 2e-3;
const PER_TYPE = 2;

let gpu: Gpu;
let engine: Engine;
type Split = 'testset' | 'testset-ood';
let items: (RefItem & { split: Split })[];
let fullLogits: Float32Array;

beforeAll(async () => {
  gpu = await testGpu();
  engine = await Engine.load(gpu, MODEL, { kvPages: 128, pageSize: 16 });
  const src = resolveSource(MODEL);
  const subset = async (file: string, split: Split) => {
    const ref = JSON.parse(new TextDecoder().decode(await src.readFile(file))) as { items: RefItem[] };
    const byType = new Map<string, RefItem[]>();
    for (const it of ref.items) byType.set(it.type, [...(byType.get(it.type) ?? []), it]);
    return [...byType.values()].flatMap((l) => l.slice(0, PER_TYPE)).map((it) => ({ ...it, split }));
  };
  items = [...(await subset('reference_answers.json', 'testset')), ...(await subset('reference_answers_ood.json', 'testset-ood'))];
  fullLogits = new Float32Array((await src.readFile('reference_first_logits.f32')).slice().buffer);
});
afterAll(() => engine.destroy());

async function image(split: Split, index: number): Promise<Blob> {
  const name = `${split === 'testset' ? 'test' : 'ood'}_${String(index).padStart(4, '0')}.png`;
  const bytes = await resolveSource(MODEL).readFile(`${split}/${name}`);
  return new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' });
}

describe('tiny-vlm-shapes = PyTorch on the CI subsets of both splits', () => {
  it('prompt ids, greedy answers and first-step logits', async () => {
    const vocab = engine.config.vocabSize;
    const results = await Promise.all(items.map(async (it) => {
      const prompt = await engine.prepare([{ role: 'user', content: [{ type: 'image', image: await image(it.split, it.index) }, { type: 'text', text: it.question }] }]);
      expect(prompt.ids).toEqual(it.prompt_ids);
      const r = await engine.generate(prompt, { maxTokens: 64, returnLogits: true });
      return { it, r };
    }));
    let worst = 0;
    for (const { it, r } of results) {
      // PyTorch's ids end with the EOS the engine does not return
      expect(r.tokens, `${it.split} item ${it.index} (${it.type}): "${it.question}"`).toEqual(it.greedy_ids.filter((t) => !engine.tokenizer.eosTokenIds.includes(t)));
      const first = r.logits![0];
      it.first_top20_ids.forEach((id, k) => (worst = Math.max(worst, Math.abs(first[id] - it.first_top20_logits[k]))));
      if (it.split === 'testset' && it.index < fullLogits.length / vocab) {
        const want = fullLogits.subarray(it.index * vocab, (it.index + 1) * vocab);
        for (let v = 0; v < vocab; v++) worst = Math.max(worst, Math.abs(first[v] - want[v]));
      }
    }
    expect(worst).toBeLessThan(LOGIT_TOL);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });
});
