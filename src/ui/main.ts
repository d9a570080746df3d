/**
 * The page: loads the bundled default model in the engine Worker and
 * streams a completion into the page through the OpenAI-style API. Talks
 * to the Worker only through comlink (WorkerEngine); model text goes in as
 * textContent, never as HTML.
 */
import { WorkerEngine } from '../worker/client.ts';

const DEFAULT_MODEL = new URLSearchParams(location.search).get('model') ?? '/models/stories260K';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLParagraphElement>('status');
const progress = $<HTMLProgressElement>('progress');
const output = $<HTMLPreElement>('output');
const metrics = $<HTMLParagraphElement>('metrics');
const go = $<HTMLButtonElement>('go');
const stop = $<HTMLButtonElement>('stop');

const engine = WorkerEngine.create();
let currentId: string | null = null;
let counter = 0;

function showError(e: unknown): void {
  status.textContent = e instanceof Error ? e.message : String(e);
  status.className = 'error';
}

async function load(): Promise<void> {
  try {
    const info = await engine.load(DEFAULT_MODEL, {
      onProgress: (p) => {
        status.textContent = `Loading ${p.file}…`;
        if (p.total) progress.value = p.loaded / p.total;
      },
    });
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
  document.body.dataset.done = 'false';
  currentId = `ui-${++counter}`;
  try {
    const stream = await engine.chat.completions.create({
      messages: [{ role: 'user', content: prompt }],
      stream: true,
      max_tokens: Number($<HTMLInputElement>('max-tokens').value),
      temperature: Number($<HTMLInputElement>('temperature').value),
      seed: Date.now() % 1e6,
      request_id: currentId,
    });
    for await (const chunk of stream) {
      output.textContent += chunk.choices[0].delta.content ?? '';
      const u = chunk.usage;
      if (u) {
        const tps = u.extra.tpotMs > 0 ? 1000 / u.extra.tpotMs : 0;
        metrics.textContent = `${u.completion_tokens} tokens (${chunk.choices[0].finish_reason}) · TTFT ${u.extra.ttftMs.toFixed(0)} ms · ${tps.toFixed(1)} tokens/s`;
      }
    }
    document.body.dataset.done = 'true';
  } catch (e) {
    showError(e);
  } finally {
    go.disabled = false;
    stop.disabled = true;
    currentId = null;
  }
});

stop.addEventListener('click', () => {
  if (currentId) void engine.abort(currentId);
});

load();
