/**
 * Which model to load: the bundled ones under /models/, a Hugging Face hub id
 * / URL typed in (all run in this tab), or a model on a remote
 * OpenAI-compatible server (vLLM, `npm run serve`): its base URL, the model's
 * name and an optional API key. The key lives in the input and in the choice
 * handed to `onLoad` only — never in storage or in the page's URL.
 */
import { h, labelled } from './dom.ts';

export const BUNDLED_MODELS: { ref: string; label: string }[] = [
  { ref: '/models/tiny-vlm-shapes', label: 'tiny-vlm-shapes (trained on shapes)' },
  { ref: '/models/tiny-vlm-idefics3', label: 'tiny-vlm-idefics3 (random weights)' },
  { ref: '/models/tiny-vlm-llava', label: 'tiny-vlm-llava (random weights)' },
  { ref: '/models/stories260K', label: 'stories260K (text only, stories)' },
];

export const DEFAULT_MODEL = BUNDLED_MODELS[0].ref;

/** A model on a remote server: `model` empty means the first one the server lists. */
export interface RemoteChoice {
  baseURL: string;
  model: string;
  apiKey?: string;
}

/** A model reference to run in this tab, or a model on a remote server. */
export type ModelChoice = string | RemoteChoice;

/** Shown to people and tests: the reference, or "model at URL". Never the key. */
export function describeChoice(choice: ModelChoice): string {
  return typeof choice === 'string' ? choice : `${choice.model || 'the first model'} at ${choice.baseURL}`;
}

/** The page's URL form, for tests and links: `?remote=http://host:8000/v1&model=<id>` (no key: keys never go in URLs). */
export function remoteFromQuery(search: string): RemoteChoice | null {
  const q = new URLSearchParams(search);
  const baseURL = q.get('remote')?.trim();
  return baseURL ? { baseURL, model: q.get('model')?.trim() ?? '' } : null;
}

export class ModelPicker {
  readonly el = h('div', { class: 'fc-pickers' });
  private readonly local = h('form', { class: 'fc-model', id: 'model-picker' });
  private readonly select = h('select', { id: 'model-select' }, ...BUNDLED_MODELS.map((m) => h('option', { value: m.ref }, m.label)));
  private readonly custom = h('input', { id: 'model-ref', type: 'text', placeholder: 'or a hub id (owner/name) or URL', spellcheck: 'false', 'aria-label': 'hub id or URL of a model' });
  private readonly button = h('button', { type: 'submit', id: 'load-model' }, 'Load');
  private readonly remote = h('details', { class: 'fc-remote', id: 'remote-picker' });
  private readonly remoteURL = h('input', { id: 'remote-url', type: 'text', inputmode: 'url', placeholder: 'server URL, e.g. http://gpu-box:8000/v1', spellcheck: 'false', 'aria-label': 'OpenAI-compatible server URL' });
  private readonly remoteModel = h('input', { id: 'remote-model', type: 'text', placeholder: 'model name (empty: the server’s first)', spellcheck: 'false', 'aria-label': 'model name on the server' });
  private readonly remoteKey = h('input', { id: 'remote-key', type: 'password', placeholder: 'API key (optional)', autocomplete: 'off', 'aria-label': 'API key for the server (kept in this page only)' });
  private readonly connect = h('button', { type: 'submit', id: 'remote-connect' }, 'Connect');

  constructor(current: ModelChoice, onLoad: (choice: ModelChoice) => void) {
    this.show(current);
    this.local.append(labelled('Model', this.select), this.custom, this.button);
    const remoteForm = h('form', { class: 'fc-model', id: 'remote-form' }, this.remoteURL, this.remoteModel, this.remoteKey, this.connect);
    this.remote.append(h('summary', {}, 'Remote server (vLLM, npm run serve, any OpenAI-compatible API)'), remoteForm);
    this.el.append(this.local, this.remote);
    this.select.addEventListener('change', () => {
      this.custom.value = '';
      onLoad(this.select.value);
    });
    this.local.addEventListener('submit', (e) => {
      e.preventDefault();
      onLoad(this.custom.value.trim() || this.select.value);
    });
    remoteForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const key = this.remoteKey.value.trim();
      onLoad({ baseURL: this.remoteURL.value.trim(), model: this.remoteModel.value.trim(), ...(key ? { apiKey: key } : {}) });
    });
  }

  /** Shows `choice` as the current one (bundled: in the list; a ref: in the text field; remote: in the server fields, opened). */
  show(choice: ModelChoice): void {
    if (typeof choice !== 'string') {
      this.remoteURL.value = choice.baseURL;
      this.remoteModel.value = choice.model;
      this.remote.open = true;
      return;
    }
    const bundled = BUNDLED_MODELS.some((m) => m.ref === choice);
    if (bundled) this.select.value = choice;
    this.custom.value = bundled ? '' : choice;
  }

  set disabled(d: boolean) {
    this.select.disabled = d;
    this.button.disabled = d;
    this.connect.disabled = d;
  }
}
