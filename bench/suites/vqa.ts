/**
 * VQA accuracy of the trained tiny VLM (public/models/tiny-vlm-shapes) under
 * KV-cache compression: the FastCache-style measure (accuracy vs memory).
 *
 * Every test item is one user turn [image, question]; the engine answers
 * greedily (up to --max-tokens, ending at <end_of_utterance>). An answer is
 * correct when its token ids, followed by the EOS, equal the reference's
 * `expected_ids` exactly (the decoded text equal to `expected` is recorded
 * too). Results come from reference_answers.json (ids, expected answer,
 * PyTorch's greedy ids) and testset/items.json (image file names).
 *
 *   1. Baseline, no compression, on the first --n items (default: all) of each
 *      split (--split: 'old' = testset/ with reference_answers.json, 'ood' =
 *      testset-ood/ with reference_answers_ood.json): accuracy per question
 *      type, agreement with PyTorch (answer ids + EOS == greedy_ids) and the
 *      prompt ids against the reference's prompt_ids.
 *   2. Grid on a subset (the first --grid-n / #types items of each type among
 *      those n): every press except 'none' × --ratios × --regions ('image':
 *      only the image tokens' span is compressible; 'all': the whole prompt).
 *      The subset also runs once more without compression (the grid's
 *      baseline row, timed like the others on cached image features).
 *
 * All items of one configuration are submitted together, --wave at a time
 * (the engine batches them; batching does not change tokens). One engine
 * serves the whole run, so each image is encoded once (the feature cache
 * holds the rest).
 *
 * Images are prepared (decoded, preprocessed, encoded) one at a time before
 * a wave is submitted: concurrent onnxruntime-web runs on distinct images hang
 * here. The vision encoder runs on wasm by default (--vision): on SwiftShader
 * the WebGPU provider took ~4.5 s per 128-px image against ~0.2 s on wasm.
 * The prefix cache is off (--prefix-cache true turns it on), so every row
 * computes every prompt and peak pages are the requests' own.
 *
 * options: --model /models/tiny-vlm-shapes  --split old,ood (baselines; the grid uses the first)  --n (all, per split)  --grid-n 35  --ratios 0.25,0.5,0.75,0.9
 *          --regions image,all  --presses knorm,...  --window 16  --max-tokens 64
 *          --kv-pages 384  --wave 100  --max-running 16  --prefill-chunk 64
 *          --vision wasm|webgpu|auto  --prefix-cache false
 */
import { Engine, type PreparedPrompt } from '../../src/engine/engine.ts';
import type { ChatMessage, CompressionOptions, GenerationResult } from '../../src/engine/types.ts';
import { PRESSES } from '../../src/kv/presses/index.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import type { BenchResult, PlotSpec } from '../types.ts';

import { loadShapesItems, matchesReference, parseSplits, sameIds, type Item, type ShapesSplit } from './shapes-items.ts';

type Region = 'image' | 'all';

/** One item's outcome under one configuration. */
interface Answer {
  /** split:index (indices repeat across splits) */
  key: string;
  index: number;
  type: string;
  tokens: number[];
  text: string;
  finishReason: GenerationResult['finishReason'];
  promptTokens: number;
  /** ids (+ EOS when it stopped) == expected_ids */
  correct: boolean;
  /** decoded text (trimmed) == expected */
  textCorrect: boolean;
  /** ids (+ EOS) == PyTorch's greedy_ids */
  pytorch: boolean;
}

interface Row {
  /** the split(s) of the row's items */
  split: string;
  press: string;
  region: Region | '-';
  ratio: number;
  items: number;
  accuracy: number;
  textAccuracy: number;
  byType: Record<string, { items: number; correct: number }>;
  /** Fraction of answers identical to the uncompressed engine's on the same items. */
  sameAsBaseline: number;
  pytorchAgreement: number;
  /** Σ evicted tokens / Σ prompt tokens. */
  evictedFraction: number;
  meanEvicted: number;
  /** Σ freed pages / Σ pages the prompts held. */
  pagesSaved: number;
  peakPages: number;
  answersPerS: number;
  seconds: number;
  prepareSeconds: number;
}

interface Config {
  maxTokens: number;
  wave: number;
  window: number;
  eos: number[];
  pageSize: number;
  log: (s: string) => void;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const t0 = performance.now();
  const model = opts.model ?? '/models/tiny-vlm-shapes';
  const ratios = (opts.ratios ?? '0.25,0.5,0.75,0.9').split(',').map(Number);
  if (ratios.some((r) => !(r > 0 && r < 1))) throw new Error(`--ratios must be in (0, 1), got '${opts.ratios}'`);
  const regions = (opts.regions ?? 'image,all').split(',') as Region[];
  for (const r of regions) if (r !== 'image' && r !== 'all') throw new Error(`--regions takes 'image' and/or 'all', got '${r}'`);
  // the model's own CCM (FastCache's learned compressor) joins the grid at its trained ratio, on image tokens
  const ccmRatio = await ccmTrainedRatio(model);
  const known = [...Object.keys(PRESSES), ...(ccmRatio !== null ? ['ccm'] : [])];
  const presses = opts.presses ? opts.presses.split(',') : known.filter((p) => p !== 'none');
  for (const p of presses) if (!known.includes(p)) throw new Error(`unknown press '${p}'; known: ${known.join(', ')}`);
  const maxTokens = int(opts['max-tokens'] ?? '64', 'max-tokens');
  const kvPages = int(opts['kv-pages'] ?? '384', 'kv-pages');
  const maxRunning = int(opts['max-running'] ?? '16', 'max-running');
  const prefixCache = opts['prefix-cache'] === 'true';
  const prefillChunk = int(opts['prefill-chunk'] ?? '64', 'prefill-chunk');
  const vision = opts.vision ?? 'wasm';
  if (vision !== 'wasm' && vision !== 'webgpu' && vision !== 'auto') throw new Error(`--vision takes wasm, webgpu or auto, got '${vision}'`);

  const splits = parseSplits(opts.split ?? 'old,ood');
  const loadedSplits = await Promise.all(splits.map((sp) => loadShapesItems(model, opts.n ? int(opts.n, 'n') : undefined, sp)));
  const items: Item[] = loadedSplits.flatMap((l) => l.items);
  const n = items.length;
  const gridN = int(opts['grid-n'] ?? '35', 'grid-n');
  const types = [...new Set(items.map((i) => i.type))];
  const perType = Math.max(1, Math.floor(gridN / types.length));
  // the grid is drawn from the first split named (--split): the old split by default, as in earlier runs
  const gridPool = items.filter((i) => i.split === splits[0]);
  const grid = types.flatMap((t) => gridPool.filter((i) => i.type === t).slice(0, perType)).sort((a, b) => a.index - b.index);

  const engine = await Engine.load(gpu, model, { kvPages, pageSize: 16, prefixCache, prefillChunk, vision: { backend: vision }, scheduler: { maxRunning, maxSampledRows: maxRunning } });
  try {
    const cfg: Config = { maxTokens, wave: int(opts.wave ?? '100', 'wave'), window: int(opts.window ?? '16', 'window'), eos: engine.tokenizer.eosTokenIds, pageSize: engine.snapshot().pool.pageSize, log };
    const c = engine.config;
    log(`${model}: ${c.numLayers} layers, ${c.numKvHeads} kv heads × ${c.headDim}; ${n} items in ${splits.join(' + ')} (${types.map((t) => `${t} ${items.filter((i) => i.type === t).length}`).join(', ')}); grid ${grid.length} items × ${presses.length} presses × ${ratios.length} ratios × ${regions.length} regions; kvPages ${kvPages}, maxRunning ${maxRunning}, prefill chunk ${prefillChunk}, vision ${vision}`);

    // warm-up: compile the plain and the compress paths (both regions) before anything is timed; the first
    // request encodes the image alone (see measure), the others find its features cached
    const w = items[0];
    await engine.generate(messages(w), { maxTokens: 2 });
    await Promise.all([
      engine.generate(messages(w), { maxTokens: 2, compression: { press: 'snapkv', ratio: 0.5, region: 'image', window: cfg.window } }),
      engine.generate(messages(w), { maxTokens: 2, compression: { press: 'knorm', ratio: 0.5, region: 'all' } }),
    ]);
    log(`warm-up done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);

    // 1. baseline on each whole split: prepare() here to check the prompt ids against PyTorch's
    const promptMismatches: { split: ShapesSplit; index: number; engine: number[]; reference: number[] }[] = [];
    const pytorchMismatches: ReportInput['pytorchMismatches'] = [];
    const rows: Row[] = [];
    const baseAnswers: Answer[] = [];
    for (const sp of splits) {
      const its = items.filter((i) => i.split === sp);
      const base = await measure(engine, its, null, cfg, async (it) => {
        const p = await engine.prepare(messages(it));
        if (!sameIds(p.ids, it.prompt_ids)) promptMismatches.push({ split: sp, index: it.index, engine: p.ids, reference: it.prompt_ids });
        return p;
      });
      const row = summarize(sp, 'none', '-', 0, its, base.answers, null, base, cfg.pageSize);
      rows.push(row);
      baseAnswers.push(...base.answers);
      const pm = base.answers.filter((a) => !a.pytorch).map((a) => {
        const it = its.find((i) => i.index === a.index)!;
        return { split: sp, index: a.index, type: a.type, engine: withEos(a, cfg), pytorch: it.greedy_ids, engineText: a.text };
      });
      pytorchMismatches.push(...pm);
      log(`baseline, ${sp} split: accuracy ${row.accuracy.toFixed(3)} on ${its.length} items, PyTorch agreement ${its.length - pm.length}/${its.length}, prompt-id mismatches ${promptMismatches.filter((m) => m.split === sp).length}, ${row.seconds.toFixed(1)} s (preparing prompts ${base.prepareSeconds.toFixed(1)} s)`);
      for (const m of pm.slice(0, 3)) log(`  item ${m.index} (${m.type}): engine ${JSON.stringify(m.engine)} vs PyTorch ${JSON.stringify(m.pytorch)}`);
    }
    const baseByKey = new Map(baseAnswers.map((a) => [a.key, a]));

    // 2. the grid: its own uncompressed row first (same items, cached features), then every press × region × ratio
    const gridSplit = splits[0];
    const gridBase = await measure(engine, grid, null, cfg);
    rows.push(summarize(gridSplit, 'none', '-', 0, grid, gridBase.answers, baseByKey, gridBase, cfg.pageSize));
    const rerunDiffers = gridBase.answers.filter((a) => !sameIds(a.tokens, baseByKey.get(a.key)!.tokens)).length;
    for (const region of regions) {
      for (const press of presses) {
        for (const ratio of ratios) {
          if (press === 'ccm' && (region !== 'image' || Math.abs(ratio - ccmRatio!) > 1e-9)) continue; // trained for one setting
          const m = await measure(engine, grid, { press, ratio, region, window: cfg.window }, cfg);
          const row = summarize(gridSplit, press, region, ratio, grid, m.answers, baseByKey, m, cfg.pageSize);
          rows.push(row);
          log(`${press} ${region} @${ratio}: accuracy ${row.accuracy.toFixed(3)}, same as uncompressed ${row.sameAsBaseline.toFixed(3)}, evicted ${(100 * row.evictedFraction).toFixed(0)} % of prompt, pages saved ${(100 * row.pagesSaved).toFixed(0)} %, ${row.answersPerS.toFixed(1)} answers/s (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
        }
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const reference = Object.fromEntries(splits.map((sp, k) => [sp, loadedSplits[k].accuracyByType ?? null]));
    return report({ model, n, splits, grid, types, rows, presses, ratios, regions, cfg, seconds, promptMismatches, pytorchMismatches, rerunDiffers, baseline: baseAnswers, reference, kvPages, maxRunning, prefixCache, vision, prefillChunk });
  } finally {
    await engine.destroy();
  }
}

function messages(it: Item): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'image', image: it.image }, { type: 'text', text: it.question }] }];
}

interface Measured {
  answers: Answer[];
  seconds: number;
  /** Of which preparing the prompts (image decoding, preprocessing, vision encoder on a feature-cache miss). */
  prepareSeconds: number;
  evicted: number;
  freedPages: number;
  peakPages: number;
}

/** Runs `items` under one configuration, --wave requests submitted together at a time. */
async function measure(engine: Engine, items: Item[], compression: CompressionOptions | null, cfg: Config, input?: (it: Item) => Promise<PreparedPrompt>): Promise<Measured> {
  const before = engine.snapshot().compression;
  engine.resetStats();
  const t = performance.now();
  const answers: Answer[] = [];
  let prepareMs = 0;
  for (let s = 0; s < items.length; s += cfg.wave) {
    const wave = items.slice(s, s + cfg.wave);
    // images are prepared one at a time, before the wave is submitted: concurrent vision-encoder runs
    // (onnxruntime-web session.run) on distinct images hang here
    const tp = performance.now();
    const prompts: PreparedPrompt[] = [];
    for (const it of wave) prompts.push(input ? await input(it) : await engine.prepare(messages(it)));
    prepareMs += performance.now() - tp;
    const results = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: cfg.maxTokens, ...(compression ? { compression } : {}) })));
    wave.forEach((it, k) => answers.push(grade(it, results[k], cfg)));
  }
  const seconds = (performance.now() - t) / 1000;
  const after = engine.snapshot();
  return { answers, seconds, prepareSeconds: prepareMs / 1000, evicted: after.compression.evictedTokens - before.evictedTokens, freedPages: after.compression.freedPages - before.freedPages, peakPages: after.pool.peakPagesInUse };
}

/** The answer's ids with the EOS put back when it stopped on one (the engine drops it; the references keep it). */
function withEos(a: Pick<Answer, 'tokens' | 'finishReason'>, cfg: Config): number[] {
  return a.finishReason === 'stop' ? [...a.tokens, cfg.eos[0]] : a.tokens;
}

/** Equal ids, where any EOS id of the tokenizer matches any other at the end. */
function matches(a: Pick<Answer, 'tokens' | 'finishReason'>, ref: number[], cfg: Config): boolean {
  return matchesReference(a, ref, cfg.eos);
}

function grade(it: Item, r: GenerationResult, cfg: Config): Answer {
  const a = { tokens: r.tokens, finishReason: r.finishReason };
  return {
    key: `${it.split}:${it.index}`, index: it.index, type: it.type, tokens: r.tokens, text: r.text, finishReason: r.finishReason, promptTokens: r.promptTokens,
    correct: matches(a, it.expected_ids, cfg), textCorrect: r.text.trim() === it.expected.trim(), pytorch: matches(a, it.greedy_ids, cfg),
  };
}

function summarize(split: string, press: string, region: Region | '-', ratio: number, items: Item[], answers: Answer[], base: Map<string, Answer> | null, m: Measured, pageSize: number): Row {
  const byType: Row['byType'] = {};
  for (const a of answers) {
    const t = (byType[a.type] ??= { items: 0, correct: 0 });
    t.items++;
    if (a.correct) t.correct++;
  }
  const promptTokens = answers.reduce((s, a) => s + a.promptTokens, 0);
  const promptPages = answers.reduce((s, a) => s + Math.ceil(a.promptTokens / pageSize), 0);
  const count = (f: (a: Answer) => boolean) => answers.filter(f).length / answers.length;
  return {
    split, press, region, ratio, items: items.length,
    accuracy: count((a) => a.correct), textAccuracy: count((a) => a.textCorrect), byType,
    sameAsBaseline: base ? count((a) => sameIds(a.tokens, base.get(a.key)!.tokens)) : 1,
    pytorchAgreement: count((a) => a.pytorch),
    evictedFraction: m.evicted / promptTokens, meanEvicted: m.evicted / answers.length,
    pagesSaved: m.freedPages / promptPages, peakPages: m.peakPages,
    answersPerS: answers.length / m.seconds, seconds: m.seconds, prepareSeconds: m.prepareSeconds,
  };
}

// ---------------------------------------------------------------- report

interface ReportInput {
  model: string;
  n: number;
  splits: ShapesSplit[];
  grid: Item[];
  types: string[];
  rows: Row[];
  presses: string[];
  ratios: number[];
  regions: Region[];
  cfg: Config;
  seconds: number;
  promptMismatches: { split: ShapesSplit; index: number; engine: number[]; reference: number[] }[];
  pytorchMismatches: { split: ShapesSplit; index: number; type: string; engine: number[]; pytorch: number[]; engineText: string }[];
  rerunDiffers: number;
  /** The uncompressed engine's answers on every item. */
  baseline: Answer[];
  /** per split: PyTorch's own accuracy by type, from the reference file */
  reference: Record<string, Record<string, number> | null>;
  kvPages: number;
  maxRunning: number;
  prefixCache: boolean;
  vision: string;
  prefillChunk: number;
}

function report(r: ReportInput): BenchResult {
  const { rows, types, cfg } = r;
  const acc = (row: Row, t: string) => {
    const x = row.byType[t];
    return x ? (x.correct / x.items).toFixed(2) : '–';
  };
  const baseRows = rows.slice(0, r.splits.length);
  const gridBase = rows[r.splits.length];
  const plots: PlotSpec[] = r.regions.map((region) => ({
    title: `VQA exact-match accuracy vs ratio (${region === 'image' ? 'image tokens compressed' : 'whole prompt compressed'}, ${r.grid.length} items)`,
    kind: 'line',
    xLabel: region === 'image' ? 'compression ratio (fraction of the image tokens evicted)' : 'compression ratio (fraction of the prompt evicted)',
    yLabel: 'accuracy (answer ids == expected)',
    series: r.presses.map((press) => ({
      name: press,
      points: [{ x: 0, y: gridBase.accuracy }, ...rows.filter((x) => x.press === press && x.region === region).map((x) => ({ x: x.ratio, y: x.accuracy }))],
    })),
  }));
  const pm = r.pytorchMismatches;
  const baseItems = baseRows.reduce((n, x) => n + x.items, 0);
  const baseAgree = baseItems - pm.length;
  const perSplit = baseRows.map((x) => {
    const m = pm.filter((y) => y.split === x.split);
    const prompts = r.promptMismatches.filter((y) => y.split === x.split).length;
    return `${x.split} split: ${x.items} items in ${x.seconds.toFixed(0)} s (of which ${x.prepareSeconds.toFixed(0)} s preparing the prompts: encoding each image once, one at a time), text-exact accuracy ${x.textAccuracy.toFixed(3)}; agreement with PyTorch's greedy answers (ids + EOS == greedy_ids): ${x.items - m.length}/${x.items}${m.length ? `; first mismatches: ${m.slice(0, 3).map((y) => `item ${y.index} (${y.type}) engine ${JSON.stringify(y.engine)} vs PyTorch ${JSON.stringify(y.pytorch)}`).join('; ')}` : ''}; prompt ids equal to the reference's prompt_ids on ${x.items - prompts}/${x.items} items`;
  });
  const refNote = Object.entries(r.reference).map(([sp, acc]) => (acc ? `${sp}: ${Object.entries(acc).map(([t, a]) => `${t} ${a.toFixed(2)}`).join(', ')}` : `${sp}: no accuracy_by_type`)).join('; ');
  return {
    name: 'vqa',
    data: {
      model: r.model, items: r.n, gridItems: r.grid.map((i) => i.index), types, presses: r.presses, ratios: r.ratios, regions: r.regions,
      window: cfg.window, maxTokens: cfg.maxTokens, wave: cfg.wave, kvPages: r.kvPages, maxRunning: r.maxRunning, prefixCache: r.prefixCache, vision: r.vision, prefillChunk: r.prefillChunk, seconds: r.seconds,
      splits: r.splits, pytorchAgreement: { agree: baseAgree, items: baseItems, mismatches: pm },
      promptIdMismatches: r.promptMismatches, gridRerunDiffers: r.rerunDiffers, referenceAccuracyByType: r.reference,
      rows, baselineAnswers: r.baseline,
    },
    table: {
      headers: ['split', 'press', 'region', 'ratio', 'items', 'accuracy', ...types, 'same as uncompressed', 'evicted / prompt tokens', 'evicted tokens / item', 'KV pages saved', 'peak pages', 'answers/s'],
      rows: rows.map((x) => [
        x.split, x.press, x.region, String(x.ratio), String(x.items), x.accuracy.toFixed(3), ...types.map((t) => acc(x, t)), x.sameAsBaseline.toFixed(3),
        `${(100 * x.evictedFraction).toFixed(1)} %`, x.meanEvicted.toFixed(1), `${(100 * x.pagesSaved).toFixed(1)} %`, String(x.peakPages), x.answersPerS.toFixed(2),
      ]),
    },
    plots,
    notes: [
      `model ${r.model}; greedy, up to ${cfg.maxTokens} tokens, ending at the EOS; one user turn [image, question] per item, the model's own chat template and processor`,
      `accuracy = exact match of ids: the answer's ids followed by the EOS equal the reference's expected_ids; per-type columns are accuracies on that row's items`,
      `baseline (the first ${baseRows.length} rows, one per split: ${r.splits.map((sp) => (sp === 'old' ? 'old = testset/, the first generation\'s 128-px pictures' : 'ood = testset-ood/, pictures of several sizes by another renderer, never trained on')).join('; ')}), no compression. ${perSplit.join('. ')}`,
      `PyTorch's own held-out accuracy (reference files): ${refNote}`,
      `grid: ${r.grid.length} items of the ${r.splits[0]} split (the first ${Math.max(1, Math.floor(r.grid.length / types.length))} of each type); row ${baseRows.length + 1} runs them again uncompressed on cached image features (the grid's baseline and its timing reference): ${r.rerunDiffers} answers differ from the baseline's (must be 0: batching and caching never change tokens)`,
      `region image: only the span of the image tokens is compressible (the rest of the prompt stays), so 'evicted / prompt tokens' is ratio × image tokens / prompt tokens; region all: the whole prompt (question included); attention-based presses use an observation window of the last ${cfg.window} prompt tokens`,
      'same as uncompressed: fraction of answers whose ids equal the uncompressed engine\'s on the same item; KV pages saved = stats().compression.freedPages delta / Σ ceil(prompt tokens / pageSize); peak pages = stats().pool.peakPagesInUse during the row',
      `answers/s: items / wall time of the row, all items submitted together (${cfg.wave} at a time; the engine runs up to ${r.maxRunning} at once, kvPages ${r.kvPages}, pageSize ${cfg.pageSize}, prefix cache ${r.prefixCache ? 'on' : 'off'}, so every row computes every prompt); SwiftShader (CPU WebGPU) unless the adapter above says otherwise`,
      `vision encoder: onnxruntime-web ${r.vision} backend (--vision), images encoded one at a time; prefill chunk ${r.prefillChunk} tokens`,
      `whole run: ${r.seconds.toFixed(0)} s (${(r.seconds / 60).toFixed(1)} min)`,
    ],
  };
}

// ---------------------------------------------------------------- helpers

/** The ratio the model's CCM was trained for (1 − 1/factor), or null when it ships none (a dev server may answer a missing file with HTML). */
async function ccmTrainedRatio(model: string): Promise<number | null> {
  const res = await fetch(`${model}/ccm_config.json`);
  if (!res.ok) return null;
  try {
    const factor = ((await res.json()) as { factor?: unknown }).factor;
    return typeof factor === 'number' && factor >= 2 ? 1 - 1 / factor : null;
  } catch {
    return null;
  }
}

function int(s: string, name: string): number {
  const v = Number(s);
  if (!(Number.isInteger(v) && v >= 1)) throw new Error(`--${name} must be a positive integer, got '${s}'`);
  return v;
}
