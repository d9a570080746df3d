/**
 * The page: loads the bundled default model in the engine Worker and
 * streams a completion into the page. Talks to the Worker only through
 * comlink; model text goes in as textContent, never as HTML.
 */
import * as Comlink from 'comlink';
import type { EngineWorkerApi } from '../worker/protocol.ts';
import type { GenerationChunk, LoadProgress } from '../engine/types.ts';

const DEFAULT_MODEL = new URLSearchParams(location.search).get('model') ?? '/models/stories260K';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLParagraphElement>('status');
const progress = $<HTMLProgressElement>('progress');
const output = $<HTMLPreElement>('output');
const metrics = $<HTMLParagraphElement>('metrics');
const go = $<HTMLButtonElement>('go');
const stop = $<HTMLButtonElement>('stop');

const worker = new Worker(new URL('../worker/engine.worker.ts', import.meta.url), { type: 'module' });
const engine = Comlink.wrap<EngineWorkerApi>(worker);

function showError(e: unknown): void {
  status.textContent = e instanceof Error ? e.message : String(e);
  status.className = 'error';
}

async function load(): Promise<void> {
  try {
    const info = await engine.load(
      DEFAULT_MODEL,
      Comlink.proxy((p: LoadProgress) => {
        status.textContent = `Loading ${p.file}…`;
        if (p.total) progress.value = p.loaded / p.total;
      }),
    );
    progress.value = 1;
    status.textContent = `Ready: ${info.modelId} (${info.architecture}, ${(info.parameters / 1e3).toFixed(0)}K parameters) on ${info.adapter}`;
    go.disabled = false;
  } catch (e) {
    showError(e);
  }
}

$<HTMLFormElement>('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const prompt = $<HTMLTextAreaElement>('prompt').value;
  output.textContent = prompt;
  go.disabled = true;
  stop.disabled = false;
  try {
    const result = await engine.generate(
      prompt,
      { maxTokens: Number($<HTMLInputElement>('max-tokens').value), sampling: { temperature: Number($<HTMLInputElement>('temperature').value), seed: Date.now() % 1e6 } },
      Comlink.proxy((c: GenerationChunk) => {
        output.textContent += c.text;
      }),
    );
    const t = result.timing;
    metrics.textContent = `${result.tokens.length} tokens (${result.finishReason}) · TTFT ${t.ttftMs.toFixed(0)} ms · ${t.tokensPerSecond.toFixed(1)} tokens/s`;
    document.body.dataset.done = 'true';
  } catch (e) {
    showError(e);
  } finally {
    go.disabled = false;
    stop.disabled = true;
  }
});

stop.addEventListener('click', () => engine.abort());

load();
