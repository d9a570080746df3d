/**
 * Peers side by side in one browser session (issue 17, part 1): fastcache-web,
 * transformers.js on WebGPU and on wasm, and wllama (llama.cpp in wasm) —
 * the same weights (bench/peers/prepare.ts writes the model files each one
 * loads, before the browser starts), the same prompt token ids, greedy.
 *
 * Measured per model and runtime: load time (fetch + ready), TTFT at each
 * prompt length, decode tok/s after the first token ((n − 1) / (last − first)),
 * and whether the greedy ids equal ours. A warm-up generation on another
 * prompt comes first (shader and kernel compilation belongs to load, not TTFT).
 *
 * options: --models stories260K,smollm2-135m  --prompts 16,128,512  --tokens 32
 *          --runtimes ours,ours-f16,tjs-webgpu,tjs-wasm,wllama,wllama-webgpu  --seed 1
 * A prompt longer than the model's context less --tokens is cut to fit (stories260K: 512 positions).
 */
import type { Gpu } from '../../src/gpu/context.ts';
import { OursRuntime } from '../peers/ours.ts';
import type { PeerRun, PeerRuntime } from '../peers/runtime.ts';
import { TransformersJsRuntime } from '../peers/transformers-js.ts';
import { WllamaRuntime } from '../peers/wllama.ts';
import { mulberry32 } from '../rng.ts';
import type { BenchResult, PlotSpec } from '../types.ts';

const RUNTIMES: Record<string, (gpu: Gpu, log: (s: string) => void) => PeerRuntime> = {
  ours: (gpu) => new OursRuntime(gpu, 'f32'),
  'ours-f16': (gpu) => new OursRuntime(gpu, 'f16'),
  'tjs-webgpu': () => new TransformersJsRuntime('webgpu'),
  'tjs-wasm': () => new TransformersJsRuntime('wasm'),
  wllama: (_, log) => new WllamaRuntime(false, log),
  'wllama-webgpu': (_, log) => new WllamaRuntime(true, log),
};

interface Row {
  model: string;
  runtime: string;
  key: string;
  backend: string;
  loadMs: number;
  runs: (PeerRun & { promptLen: number })[];
  decodeTokPerS: number;
  /** Prompts whose greedy ids equal ours (f32), of all. */
  sameAsOurs: number;
  /** First position where ids differ from ours, per prompt (-1: equal). */
  firstDiff: number[];
  error?: string;
}

export async function run(gpu: Gpu, opts: Record<string, string>, log: (s: string) => void): Promise<BenchResult> {
  const models = (opts.models ?? 'stories260K,smollm2-135m').split(',');
  const lengths = (opts.prompts ?? '16,128,512').split(',').map(Number);
  const tokens = Number(opts.tokens ?? 32);
  const keys = (opts.runtimes ?? 'ours,ours-f16,tjs-webgpu,tjs-wasm,wllama,wllama-webgpu').split(',');
  for (const k of keys) if (!RUNTIMES[k]) throw new Error(`--runtimes: unknown runtime '${k}'; known: ${Object.keys(RUNTIMES).join(', ')}`);
  if (!keys.includes('ours')) throw new Error("--runtimes must include 'ours' (the f32 engine every other runtime's ids are compared with)");
  if (lengths.some((l) => !Number.isInteger(l) || l < 1) || !Number.isInteger(tokens) || tokens < 2) throw new Error('--prompts takes positive integers, --tokens an integer ≥ 2');
  const rows: Row[] = [];
  for (const model of models) {
    const url = `/bench/peers-models/${model}`;
    const config = (await (await fetch(`${url}/config.json`)).json()) as { vocab_size: number; max_position_embeddings: number };
    const fit = lengths.map((l) => Math.min(l, config.max_position_embeddings - tokens));
    const rand = mulberry32(Number(opts.seed ?? 1));
    // ids past the specials and the byte tokens
    const prompt = (n: number) => Array.from({ length: n }, () => 259 + Math.floor(rand() * (config.vocab_size - 259)));
    const warm = prompt(8);
    const prompts = fit.map(prompt);
    let ours: number[][] | null = null;
    for (const key of keys) {
      const row = await measure(RUNTIMES[key](gpu, log), key, model, url, warm, prompts, tokens, log);
      if (key === 'ours') ours = row.runs.map((r) => r.ids);
      rows.push(row);
    }
    for (const row of rows.filter((r) => r.model === model && !r.error)) {
      row.firstDiff = row.runs.map((r, i) => firstDifference(r.ids, ours?.[i] ?? []));
      row.sameAsOurs = row.firstDiff.filter((d) => d === -1).length;
    }
  }
  return report(rows, models, lengths, tokens);
}

async function measure(rt: PeerRuntime, key: string, model: string, url: string, warm: number[], prompts: number[][], tokens: number, log: (s: string) => void): Promise<Row> {
  const row: Row = { model, runtime: rt.name, key, backend: rt.backend, loadMs: 0, runs: [], decodeTokPerS: 0, sameAsOurs: 0, firstDiff: [] };
  try {
    const t0 = performance.now();
    await rt.load(url, model);
    row.loadMs = performance.now() - t0;
    row.backend = rt.backend;
    await rt.generate(warm, 4);
    for (const p of prompts) {
      const r = await rt.generate(p, tokens);
      if (r.ids.length < 2) throw new Error(`generated ${r.ids.length} token(s) for a ${p.length}-token prompt, expected ${tokens}`);
      row.runs.push({ ...r, promptLen: p.length });
      log(`${model} · ${rt.name}: prompt ${p.length} → TTFT ${r.ttftMs.toFixed(0)} ms, ${r.ids.length} tokens in ${r.totalMs.toFixed(0)} ms`);
    }
    row.decodeTokPerS = mean(row.runs.map((r) => (r.ids.length - 1) / ((r.totalMs - r.ttftMs) / 1000)));
    log(`${model} · ${rt.name}: load ${row.loadMs.toFixed(0)} ms, decode ${row.decodeTokPerS.toFixed(1)} tok/s`);
  } catch (e) {
    row.error = (e as Error).message.split('\n')[0];
    log(`${model} · ${rt.name}: FAILED — ${row.error}`);
  } finally {
    await rt.close().catch(() => {});
  }
  return row;
}

function report(rows: Row[], models: string[], lengths: number[], tokens: number): BenchResult {
  const oursOf = (model: string) => rows.find((r) => r.model === model && r.key === 'ours');
  const ratio = (r: Row) => {
    const o = oursOf(r.model);
    return !r.error && o && !o.error && r.key !== 'ours' ? Number((o.decodeTokPerS / r.decodeTokPerS).toFixed(2)) : '–';
  };
  const ttft = (r: Row, i: number) => (r.runs[i] ? Math.round(r.runs[i].ttftMs) : '–');
  const plots: PlotSpec[] = models.flatMap((m) => {
    const ok = rows.filter((r) => r.model === m && !r.error);
    return [
      { title: `${m}: decode tok/s (greedy, ${tokens} tokens)`, kind: 'bar', xLabel: 'runtime', yLabel: 'tokens / s', series: [{ name: 'decode', points: ok.map((r) => ({ x: r.key, y: r.decodeTokPerS })) }] },
      { title: `${m}: TTFT by prompt length`, kind: 'bar', xLabel: 'runtime', yLabel: 'ms', logY: true, series: ok[0]?.runs.map((run, i) => ({ name: `${run.promptLen} tokens`, points: ok.map((r) => ({ x: r.key, y: r.runs[i]?.ttftMs ?? 0 })) })) ?? [] },
    ] satisfies PlotSpec[];
  });
  const failed = rows.filter((r) => r.error);
  return {
    name: 'peers',
    data: { lengths, tokens, rows },
    table: {
      headers: ['model', 'runtime', 'backend', 'load (ms)', ...lengths.map((l) => `TTFT @${l} (ms)`), 'decode tok/s', 'ours ÷ it (decode)', 'greedy ids = ours', 'first difference'],
      rows: rows.map((r) => [
        r.model, r.runtime, r.backend, r.error ? '–' : Math.round(r.loadMs), ...lengths.map((_, i) => ttft(r, i)), r.error ? `failed` : r.decodeTokPerS, ratio(r),
        r.error ? '–' : `${r.sameAsOurs}/${r.runs.length}`, r.error ? '–' : r.firstDiff.map((d) => (d < 0 ? '–' : `@${d}`)).join(' '),
      ]),
    },
    plots,
    notes: [
      'same weights for every runtime (f32; fastcache-web also with f16): stories260K = the real checkpoint, smollm2-135m = SmolLM2-135M shapes with seeded random weights; ONNX exported by bench/peers/export_onnx.py (Debian torch), GGUF by bench/peers/llama-gguf.ts',
      `the same seeded prompt ids per model (lengths ${lengths.join(' / ')}, cut to the model's context less ${tokens}), greedy ${tokens} new tokens, KV in f32 everywhere; one warm-up generation per runtime before timing`,
      'TTFT = call → first new token; decode tok/s = (tokens − 1) / (last − first token), mean over the prompts; load = fetch of the files + runtime ready',
      `the copies' end-of-sequence id is 0 (<unk>), so each runtime keeps its own stop rule; runs that stopped before ${tokens} tokens: ${rows.flatMap((r) => r.runs).filter((r) => r.ids.length < tokens).length}`,
      ...failed.map((r) => `${r.model} · ${r.runtime}: failed — ${r.error}`),
    ],
  };
}

function firstDifference(a: number[], b: number[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}
