/**
 * <fastcache-chat>: the chat about an image (src/ui/chat-app.ts) in a shadow
 * root, for any page.
 *
 *   <fastcache-chat model="/models/tiny-vlm-shapes" press="snapkv" ratio="0.5"
 *                   system-prompt="Answer in one word."></fastcache-chat>
 *
 *   el.addEventListener('token', (e) => e.detail.text);           // each piece of the answer
 *   el.addEventListener('done',  (e) => e.detail.text, e.detail.usage);
 *   el.addEventListener('error', (e) => e.detail.message);        // plain words
 *   el.addEventListener('loaded', (e) => e.detail);               // EngineInfo
 *   const answer = await el.ask('What shape is it?', file);       // resolves with the answer's text
 *   el.stop(); el.newChat(); await el.stats();
 *
 * Changing `model` loads that model (the conversation starts over);
 * `press`, `ratio` and `system-prompt` apply from the next question. The
 * element's data-state is loading | ready | generating | done | error.
 *
 * The engine is the origin's shared one (a SharedWorker: every element and
 * tab on the same model shares one loaded model, KV pool and prefix cache),
 * or a dedicated Worker where that cannot run it. `worker="dedicated"` (read
 * when the element first connects) gives the element a dedicated Worker of
 * its own:  <fastcache-chat worker="dedicated"></fastcache-chat>
 */
import { ChatApp } from '../ui/chat-app.ts';
import { DEFAULT_MODEL } from '../ui/model-picker.ts';
import type { Answer } from '../ui/chat-session.ts';
import { APP_LOAD_OPTIONS, WorkerEngine, workerEngines } from '../worker/client.ts';
import { plainMessage } from '../ui/errors.ts';
import type { ChatEngineFactory, EngineInfo, EngineStats, Usage } from '../api/index.ts';

export interface FastcacheChatEvents {
  token: CustomEvent<{ text: string }>;
  done: CustomEvent<{ text: string; usage: Usage | null; finishReason: Answer['finishReason'] }>;
  error: CustomEvent<{ message: string }>;
  loaded: CustomEvent<EngineInfo>;
}

export class FastcacheChat extends HTMLElement {
  static readonly observedAttributes = ['model', 'press', 'ratio', 'system-prompt'];
  private app: ChatApp | null = null;

  /** Asks a question (about `image`, if given); resolves with the answer's text, rejects with the error shown. */
  async ask(text: string, image: Blob | null = null): Promise<string> {
    return (await this.mount().ask(text, image)).text;
  }

  stop(): void {
    this.app?.stop();
  }

  /** The engine's counters (pool pages, throughput, cache hits, compression). */
  stats(): Promise<EngineStats> {
    return this.mount().session.stats();
  }

  newChat(): void {
    this.app?.newChat();
  }

  connectedCallback(): void {
    this.mount();
  }

  attributeChangedCallback(name: string, old: string | null, value: string | null): void {
    if (!this.app || old === value) return; // before mounting, mount() reads the attributes
    if (name === 'model') void this.app.load(value || DEFAULT_MODEL);
    else if (name === 'press') this.app.settings.set({ press: value ?? 'none' });
    else if (name === 'ratio') this.app.settings.set({ ratio: Number(value ?? 0) });
    else if (name === 'system-prompt') this.app.systemPrompt = value ?? '';
  }

  private mount(): ChatApp {
    if (this.app) return this.app;
    const shadow = this.shadowRoot ?? this.attachShadow({ mode: 'open' });
    const ratio = this.getAttribute('ratio');
    this.app = new ChatApp(shadow, {
      engines: this.createEngines(),
      model: this.getAttribute('model') || DEFAULT_MODEL,
      host: this,
      pasteTarget: shadow,
      full: false,
      settings: { press: this.getAttribute('press') ?? 'none', ...(ratio !== null ? { ratio: Number(ratio) } : {}) },
      systemPrompt: this.getAttribute('system-prompt') ?? '',
      on: {
        token: (text) => this.emit('token', { text }),
        done: (a) => this.emit('done', { text: a.text, usage: a.usage, finishReason: a.finishReason }),
        error: (message) => this.emit('error', { message }),
        loaded: (info) => this.emit('loaded', info),
      },
    });
    return this.app;
  }

  /**
   * The engine factory the element's chat loads models with: the origin's
   * Worker engine. A subclass may hand it another (a test's fake engine, a
   * RemoteEngine); read once, when the element first mounts.
   */
  protected createEngines(): ChatEngineFactory {
    const engine = WorkerEngine.create({ shared: this.getAttribute('worker') !== 'dedicated' });
    engine.onWorkerLost((message) => this.app?.notice(plainMessage(message))); // a new Worker is on its way
    return workerEngines(engine, this.getAttribute('persist') === 'off' ? {} : APP_LOAD_OPTIONS);
  }

  private emit<K extends keyof FastcacheChatEvents>(type: K, detail: FastcacheChatEvents[K]['detail']): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}
