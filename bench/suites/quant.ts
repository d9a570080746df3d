/**
 * Quantized weights against f32 in one run (issue 17, part 2): the same
 * model loaded with weightDtype f32, q8 and q4.
 *
 *   stories260K: story prompts, greedy 48 tokens — free-running agreement
 *     (fraction of positions equal to f32's), forced top-1 agreement and
 *     mean KL(f32 ‖ quantized) with f32's tokens forced, decode tok/s;
 *   the shapes VLM: exact-match accuracy on the test items (correct = the
 *     answer's ids + EOS equal the reference's expected ids), and how many
 *     answers equal f32's.
 *
 * Bytes per parameter are the engine's own (EngineInfo.matrixBytesPerParam).
 *
 * options: --text /models/stories260K  --vlm /models/tiny-vlm-shapes  --n 6 (prompts)
 *          --tokens 48  --vqa-n 48 (items; 0 skips the VQA part)  --formats q8,q4
 */
import { Engine } from '../../src/engine/engine.ts';
import type { ChatMessage, GenerationResult } from '../../src/engine/types.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchResult, PlotSpec } from '../types.ts';
import { klDivergence } from './compression.ts';
import { loadShapesItems, matchesReference, sameIds, type Item } from './shapes-items.ts';
import { storyPrompts } from './stories.ts';

type Dtype = 'f32' | 'f16' | 'q8' | 'q4';

interface TextRow {
  dtype: Dtype; bytesPerParam: number; weightMB: number; freeAgreement: number; forcedTop1: number; meanKl: number; decodeTokPerS: number;
  /** Where each prompt's free run first parts from f32's, with f32's own top-1 − top-2 logit margin there and that margin's rank among all of f32's positions (0: the smallest). */
  divergences: { prompt: number; at: number; f32Margin: number; marginPercentile: number }[];
}
interface VqaRow { dtype: Dtype; items: number; accuracy: number; sameAsF32: number }

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const text = opts.text ?? '/models/stories260K';
  const vlm = opts.vlm ?? '/models/tiny-vlm-shapes';
  const n = int(opts.n ?? '6', 'n'), tokens = int(opts.tokens ?? '48', 'tokens'), vqaN = Number(opts['vqa-n'] ?? 48);
  const formats = (opts.formats ?? 'f16,q8,q4').split(',') as Dtype[];
  for (const f of formats) if (f !== 'f16' && f !== 'q8' && f !== 'q4') throw new Error(`--formats: unknown format '${f}' (use f16, q8, q4)`);
  const textRows = await textPart(gpu, text, ['f32', ...formats], n, tokens, log);
  const vqaRows = vqaN > 0 ? await vqaPart(gpu, vlm, ['f32', ...formats], vqaN, log) : [];
  return report(textRows, vqaRows, { text, vlm, n, tokens });
}

async function textPart(gpu: Gpu, model: string, dtypes: Dtype[], n: number, tokens: number, log: (s: string) => void): Promise<TextRow[]> {
  const rows: TextRow[] = [];
  let base: GenerationResult[] = [];
  for (const dtype of dtypes) {
    const engine = await Engine.load(gpu, model, { weightDtype: dtype, kvDtype: 'f32' });
    try {
      const prompts = storyPrompts(engine, n, [16, 32]);
      const common = { maxTokens: tokens, ignoreEos: true, sampling: { temperature: 0 } };
      await engine.generate(prompts[0].ids, { maxTokens: 2 }); // compiles the pipelines
      const free: GenerationResult[] = [];
      for (const p of prompts) free.push(await engine.generate(p.ids, { ...common, returnLogits: dtype === 'f32' }));
      if (dtype === 'f32') base = free;
      const forced = dtype === 'f32' ? free : await Promise.all(prompts.map((p, k) => engine.generate(p.ids, { ...common, forceTokens: base[k].tokens, returnLogits: true })));
      let agree = 0, top1 = 0, kl = 0, positions = 0;
      prompts.forEach((_, k) => {
        for (let i = 0; i < tokens; i++) {
          if (free[k].tokens[i] === base[k].tokens[i]) agree++;
          if (argmax(forced[k].logits![i]) === base[k].tokens[i]) top1++;
          kl += klDivergence(base[k].logits![i], forced[k].logits![i]);
          positions++;
        }
      });
      const info = await engine.info();
      const margins = base.flatMap((b) => b.logits!.map(margin)).sort((x, y) => x - y);
      const divergences = prompts.flatMap((_, k) => {
        const at = free[k].tokens.findIndex((t, i) => t !== base[k].tokens[i]);
        if (at < 0) return [];
        const f32Margin = margin(base[k].logits![at]);
        return [{ prompt: k, at, f32Margin, marginPercentile: (100 * margins.filter((x) => x < f32Margin).length) / margins.length }];
      });
      const row: TextRow = {
        divergences,
        dtype, bytesPerParam: info.matrixBytesPerParam ?? 0, weightMB: (info.weightBytes ?? 0) / 2 ** 20,
        freeAgreement: agree / positions, forcedTop1: top1 / positions, meanKl: kl / positions,
        decodeTokPerS: free.reduce((a, r) => a + r.timing.tokensPerSecond, 0) / free.length,
      };
      rows.push(row);
      log(`${model} ${dtype}: ${row.bytesPerParam.toFixed(3)} B/param, free agreement ${row.freeAgreement.toFixed(3)}, forced top-1 ${row.forcedTop1.toFixed(3)}, KL ${row.meanKl.toExponential(2)}, ${row.decodeTokPerS.toFixed(1)} tok/s`);
    } finally {
      await engine.destroy();
    }
  }
  return rows;
}

async function vqaPart(gpu: Gpu, model: string, dtypes: Dtype[], n: number, log: (s: string) => void): Promise<VqaRow[]> {
  const { items } = await loadShapesItems(model, n);
  const rows: VqaRow[] = [];
  let base: GenerationResult[] = [];
  for (const dtype of dtypes) {
    const engine = await Engine.load(gpu, model, { weightDtype: dtype, kvPages: 256 });
    try {
      const eos = engine.tokenizer.eosTokenIds;
      const answers = await Promise.all(items.map((it) => engine.generate(messages(it), { maxTokens: 24, sampling: { temperature: 0 } })));
      if (dtype === 'f32') base = answers;
      const correct = answers.filter((a, i) => matchesReference(a, items[i].expected_ids, eos)).length;
      const same = answers.filter((a, i) => sameIds(a.tokens, base[i].tokens)).length;
      rows.push({ dtype, items: items.length, accuracy: correct / items.length, sameAsF32: same / items.length });
      log(`${model} ${dtype}: VQA accuracy ${(correct / items.length).toFixed(3)} on ${items.length} items, ${same} answers equal to f32's`);
    } finally {
      await engine.destroy();
    }
  }
  return rows;
}

function messages(it: Item): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'image', image: it.image }, { type: 'text', text: it.question }] }];
}

function report(text: TextRow[], vqa: VqaRow[], o: { text: string; vlm: string; n: number; tokens: number }): BenchResult {
  const vqaOf = (d: Dtype) => vqa.find((v) => v.dtype === d);
  const f32Acc = vqaOf('f32')?.accuracy;
  const plots: PlotSpec[] = [
    { title: `Agreement with f32 (${o.text}, ${o.n} prompts × ${o.tokens} tokens)`, kind: 'bar', xLabel: 'weights', yLabel: 'fraction equal to f32', series: [
      { name: 'free-running', points: text.map((r) => ({ x: r.dtype, y: r.freeAgreement })) },
      { name: 'forced top-1', points: text.map((r) => ({ x: r.dtype, y: r.forcedTop1 })) },
      ...(vqa.length ? [{ name: 'VQA accuracy', points: vqa.map((r) => ({ x: r.dtype, y: r.accuracy })) }] : []),
    ] },
    { title: 'GPU bytes per parameter of the layers\' matrices', kind: 'bar', xLabel: 'weights', yLabel: 'bytes / parameter', series: [{ name: 'bytes/param', points: text.map((r) => ({ x: r.dtype, y: r.bytesPerParam })) }] },
  ];
  return {
    name: 'quant',
    data: { options: o, text, vqa },
    table: {
      headers: ['weights', 'bytes/param (matrices)', 'weights MB', 'greedy agreement (free)', 'top-1 agreement (forced)', 'mean KL vs f32 (nats)', 'decode tok/s', 'VQA accuracy', 'VQA Δ vs f32 (points)', 'VQA answers = f32'],
      rows: text.map((r) => {
        const v = vqaOf(r.dtype);
        return [r.dtype, r.bytesPerParam, r.weightMB, r.freeAgreement, r.forcedTop1, r.meanKl, r.decodeTokPerS, v ? v.accuracy : '–', v && f32Acc !== undefined ? Number((100 * (v.accuracy - f32Acc)).toFixed(1)) : '–', v ? v.sameAsF32 : '–'];
      }),
    },
    plots,
    notes: [
      `text: ${o.text}, ${o.n} story prompts, greedy ${o.tokens} tokens with ignore_eos; free: each model runs on its own; forced: f32's tokens fed back (forceTokens), top-1 and KL(f32 ‖ quantized) per position`,
      `VQA: ${o.vlm}, ${vqa[0]?.items ?? 0} test items; correct = the answer's ids + EOS equal reference_answers.json's expected ids`,
      'q8: int8 codes in blocks of 32 along k, one f32 scale each (max|w| / 127); q4: 4-bit codes, max|w| / 7; embeddings and LM head stay f16; rows padded to 32',
      'f16: the packed-f16 weights (every matrix, embeddings and head), for comparison',
      ...text.filter((r) => r.dtype !== 'f32').map((r) => `${r.dtype}: ${r.divergences.length ? `its free run parts from f32's in ${r.divergences.length} of ${o.n} prompts, where f32's own top-1 − top-2 logit margin was ${r.divergences.map((d) => `${d.f32Margin.toFixed(4)} (prompt ${d.prompt + 1}, token ${d.at + 1}; ${d.marginPercentile.toFixed(1)} % of f32's positions are closer)`).join(', ')}` : 'never parts from f32 in these prompts'}`),
      'the baseline in the same run is the f32 load of the same model',
    ],
  };
}

/** Top-1 minus top-2 logit: how close greedy was to choosing otherwise. */
function margin(x: Float32Array): number {
  let a = -Infinity, b = -Infinity;
  for (const v of x) {
    if (v > a) [a, b] = [v, a];
    else if (v > b) b = v;
  }
  return a - b;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function int(s: string, name: string): number {
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} ${s}: expected a positive integer`);
  return v;
}
