/**
 * The whole chat, mounted into a root: the page's <body> or a
 * <fastcache-chat>'s shadow root. Wires the pieces (model picker, progress,
 * errors, transcript, image input, settings, metrics) to one ChatSession and
 * reports its state as data-state on `host`. The engine comes from the
 * entry point (a `ChatEngineFactory`); nothing here knows where it runs.
 * A remote choice in the picker (or `?remote=URL&model=id` on the page) loads
 * through `remote` instead: a factory for that server's models.
 *
 *   loading ──▶ ready ──ask──▶ generating ──▶ done ──ask──▶ generating …
 *      │                            │
 *      └──────────▶ error ◀─────────┘   (the chat keeps working: ask again, or load another model)
 */
import { ChatSession, type Answer } from './chat-session.ts';
import { ChatView } from './chat-view.ts';
import { h } from './dom.ts';
import { ErrorBanner, plainMessage } from './errors.ts';
import { checkImageFile } from './image-check.ts';
import { ImageInput } from './image-input.ts';
import { MetricsPanel } from './metrics-panel.ts';
import { ModelPicker, describeChoice, remoteFromQuery, type ModelChoice } from './model-picker.ts';
import { ProgressList } from './progress.ts';
import { SettingsPanel, type ChatSettings } from './settings.ts';
import type { ChatEngineFactory, EngineInfo, LoadProgress } from '../api/index.ts';
import css from './style.css?inline';

export type ChatState = 'loading' | 'ready' | 'generating' | 'done' | 'error';

export interface ChatAppOptions {
  /** Makes the engine for a model (the entry point decides what it is: a Worker, a remote server, …). */
  engines: ChatEngineFactory;
  /**
   * Makes the factory for a remote server's models (default: `remoteEngines`
   * from src/remote, imported on first use). The key, if any, stays in the
   * factory, in memory.
   */
  remote?: (server: { baseURL: string; apiKey?: string }) => ChatEngineFactory;
  /** What to load first: a model reference for `engines`, or a model on a remote server. The full page also reads `?remote=URL&model=id`. */
  model: ModelChoice;
  /** Gets data-state / data-model / data-vision; catches files dropped anywhere on it (the page's body, or the element). */
  host: HTMLElement;
  /** Where pasted images are caught (the document for the page; the shadow root for the component). */
  pasteTarget: EventTarget;
  /** The page shows everything; the component a compact chat (model picker and settings hidden, no plot). */
  full: boolean;
  settings?: Partial<ChatSettings>;
  systemPrompt?: string;
  on?: {
    token?(text: string): void;
    done?(answer: Answer): void;
    error?(message: string): void;
    loaded?(info: EngineInfo): void;
  };
}

export class ChatApp {
  readonly session: ChatSession;
  readonly settings: SettingsPanel;
  systemPrompt: string;
  private readonly opts: ChatAppOptions;
  private readonly view = new ChatView();
  private readonly errors = new ErrorBanner();
  private readonly progress = new ProgressList();
  private readonly metrics: MetricsPanel;
  private readonly image: ImageInput;
  private readonly picker: ModelPicker;
  private readonly status = h('p', { class: 'fc-status', id: 'status', role: 'status' }, 'Loading…');
  private readonly randomLabel = h('span', { class: 'fc-badge', id: 'random-weights', hidden: true }, 'random weights: answers are meaningless');
  private readonly prompt = h('textarea', { id: 'prompt', rows: 2, placeholder: 'Ask about the image… (Enter sends, Shift+Enter for a new line)' });
  private readonly askButton = h('button', { type: 'submit', id: 'ask', disabled: true }, 'Ask');
  private readonly stopButton = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  private readonly newButton = h('button', { type: 'button', id: 'new-chat' }, 'New chat');
  private loading: Promise<void> = Promise.resolve();
  private answering: Promise<void> = Promise.resolve();
  private loaded = false;

  constructor(root: Node & ParentNode, opts: ChatAppOptions) {
    this.opts = opts;
    this.session = new ChatSession(opts.engines);
    this.systemPrompt = opts.systemPrompt ?? '';
    const app = h('div', { class: `fc-app ${opts.full ? 'fc-full' : 'fc-compact'}` });
    this.settings = new SettingsPanel(opts.settings);
    this.metrics = new MetricsPanel(() => this.session.stats(), opts.full, () => this.session.clearStoredCaches());
    const first = (opts.full && typeof location !== 'undefined' ? remoteFromQuery(location.search) : null) ?? opts.model;
    this.picker = new ModelPicker(first, (choice) => void this.load(choice));
    this.image = new ImageInput(opts.host, opts.pasteTarget, (m) => this.fail(m), () => this.errors.clear());

    const composer = h('form', { class: 'fc-composer', id: 'composer' }, this.image.el, this.prompt, h('div', { class: 'fc-buttons' }, this.askButton, this.stopButton, this.newButton));
    const header = h('header', { class: 'fc-header' }, ...(opts.full ? [this.picker.el] : []), h('div', { class: 'fc-model-line' }, this.status, this.randomLabel));
    const chat = h('section', { class: 'fc-chat' }, this.view.el, composer);
    const side = h('aside', { class: 'fc-side' }, this.settings.el, this.metrics.el);
    if (!opts.full) this.settings.el.hidden = true;
    app.append(h('style', {}, css), header, this.progress.el, this.errors.el, h('div', { class: 'fc-body' }, chat, side));
    root.append(app);

    composer.addEventListener('submit', (e) => {
      e.preventDefault();
      this.ask(this.prompt.value, this.image.image).catch(() => {}); // shown in the page already
    });
    this.prompt.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!this.askButton.disabled) composer.requestSubmit(); // as the button: not while loading or answering
      }
    });
    this.stopButton.addEventListener('click', () => this.session.stop());
    this.newButton.addEventListener('click', () => this.newChat());
    void this.load(first);
  }

  /** Loads (or replaces) the model, here or on a remote server; calls queue, so the last one wins. Errors are shown, not thrown. */
  load(choice: ModelChoice): Promise<void> {
    this.session.stop();
    const answering = this.answering;
    this.loading = this.loading.then(() => answering).then(() => this.doLoad(choice)); // the stopped answer ends first
    return this.loading;
  }

  /** Asks a question (about `image`, if given) and streams the answer into the chat; rejects after showing the error. */
  async ask(question: string, image: Blob | null = null): Promise<Answer> {
    await this.loading;
    const text = question.trim();
    try {
      if (!text) throw new Error(image ? 'Type a question about the image first.' : 'Type a question first.');
      if (image) {
        const check = await checkImageFile(image);
        if (!check.ok) throw new Error(check.message);
      }
      // no await from here to session.ask(), which marks the session busy at once
      if (this.session.busy) throw new Error('An answer is still streaming: wait for it or press Stop first.');
    } catch (e) {
      const message = plainMessage(e);
      this.fail(message, !this.session.busy); // a streaming answer keeps its state
      throw new Error(message);
    }
    this.errors.clear();
    this.setState('generating');
    this.prompt.value = '';
    this.image.clear(); // the image now belongs to the conversation
    const user = this.view.addUser(text, image);
    const bubble = this.view.startAssistant();
    this.metrics.begin();
    const s = this.settings.get();
    const compression = this.settings.compression();
    const cachePrefix = this.settings.cachePrefix();
    let answered!: () => void;
    this.answering = new Promise<void>((resolve) => (answered = resolve));
    try {
      const answer = await this.session.ask(
        text,
        image,
        { maxTokens: s.maxTokens, temperature: s.temperature, systemPrompt: this.systemPrompt, ...(compression ? { compression } : {}), ...(cachePrefix ? { cachePrefix } : {}) },
        (t) => {
          bubble.append(t);
          this.metrics.token();
          this.opts.on?.token?.(t);
        },
      );
      bubble.finish(answer);
      this.metrics.end(answer.usage);
      this.setState('done');
      this.opts.on?.done?.(answer);
      return answer;
    } catch (e) {
      const message = plainMessage(e);
      bubble.remove();
      user.fail(message);
      this.metrics.end(null);
      if (!this.prompt.value) this.prompt.value = text; // so it can be sent again
      this.fail(message);
      throw new Error(message); // the words the page shows and the error event carries
    } finally {
      answered();
    }
  }

  stop(): void {
    this.session.stop();
  }

  /** Shows what happened underneath (the engine's Worker was lost and restarted) without ending the chat. */
  notice(message: string): void {
    this.errors.show(message);
    this.opts.on?.error?.(message);
  }

  newChat(): void {
    this.session.newChat();
    this.view.clear();
    this.image.clear();
    this.errors.clear();
    this.prompt.focus();
  }

  private async doLoad(choice: ModelChoice): Promise<void> {
    const label = describeChoice(choice);
    const remote = typeof choice === 'string' ? null : choice;
    this.loaded = false;
    this.setState('loading');
    this.picker.show(choice);
    this.picker.disabled = true;
    this.status.textContent = remote ? `Connecting to ${label}…` : `Loading ${label}…`;
    this.randomLabel.hidden = true;
    this.progress.reset();
    this.view.clear();
    try {
      const onProgress = (p: LoadProgress) => this.progress.update(p);
      const info = remote
        ? await this.session.load(remote.model, onProgress, (await this.remoteFactory())({ baseURL: remote.baseURL, ...(remote.apiKey ? { apiKey: remote.apiKey } : {}) }))
        : await this.session.load(choice as string, onProgress);
      this.progress.finish();
      this.loaded = true;
      const params = info.parameters >= 1e6 ? `${(info.parameters / 1e6).toFixed(1)}M parameters, ` : info.parameters > 0 ? `${(info.parameters / 1e3).toFixed(0)}K parameters, ` : '';
      const where = remote ? `the server at ${remote.baseURL}${info.adapter && !info.adapter.includes(remote.baseURL) ? ` (${info.adapter})` : ''}` : info.adapter || 'WebGPU';
      this.status.textContent = `Ready: ${info.modelId} (${info.architecture}, ${params}${info.vision ? 'reads images' : 'text only'}) on ${where}`;
      this.randomLabel.hidden = !info.randomWeights;
      this.settings.setCcm(info.ccmRatio ?? null);
      this.view.setHint(info.vision ? 'Pick, drop or paste an image, then ask about it.' : `${info.modelId} reads text only: type a message.`);
      this.prompt.placeholder = `${info.vision ? 'Ask about the image…' : 'Type a message…'} (Enter sends, Shift+Enter for a new line)`;
      this.opts.host.dataset.model = info.modelId;
      if (remote) this.opts.host.dataset.remote = remote.baseURL;
      else delete this.opts.host.dataset.remote;
      this.opts.host.dataset.vision = String(!!info.vision);
      this.errors.clear();
      this.setState('ready');
      void this.metrics.refresh();
      this.opts.on?.loaded?.(info);
    } catch (e) {
      this.progress.finish();
      this.status.textContent = 'No model loaded.';
      this.fail(`Could not ${remote ? 'connect to' : 'load'} ${label}: ${plainMessage(e)}`);
    } finally {
      this.picker.disabled = false;
    }
  }

  /** The entry point's, or RemoteEngine's (src/remote, with the openai client: loaded only when a remote model is chosen). */
  private async remoteFactory(): Promise<NonNullable<ChatAppOptions['remote']>> {
    return this.opts.remote ?? (await import('../remote/remote-engine.ts')).remoteEngines;
  }

  private fail(message: string, changeState = true): void {
    this.errors.show(message);
    if (changeState) this.setState('error');
    this.opts.on?.error?.(message);
  }

  private setState(state: ChatState): void {
    this.opts.host.dataset.state = state;
    const generating = state === 'generating';
    this.askButton.disabled = generating || state === 'loading' || !this.loaded;
    this.stopButton.disabled = !generating;
  }
}
