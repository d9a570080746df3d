/**
 * One conversation with an engine, without any DOM: loads a model (through
 * the engine factory its entry point hands it: main.ts, <fastcache-chat>),
 * keeps the messages (the whole conversation goes to the engine each turn,
 * so the engine can reuse the cached prefix, an image's KV included), streams
 * an answer, stops it. The page and <fastcache-chat> both drive one of these.
 * It knows engines only as `ChatEngine` (src/api): Worker, in-process or remote.
 */
import type {
  ChatEngine, ChatEngineFactory, ChatMessage, CachePrefixOptions, CompressionOptions, ContentPart, EngineInfo, EngineStats, FinishReasonOpenAI, LoadProgress, Usage,
} from '../api/index.ts';

export interface AskOptions {
  maxTokens: number;
  temperature: number;
  /** Omitted, or press 'none' / ratio 0: no compression. */
  compression?: CompressionOptions;
  /** Keep the conversation's image prefix compressed and shared; applied only when the conversation has an image. */
  cachePrefix?: CachePrefixOptions;
  systemPrompt?: string;
}

export interface Answer {
  text: string;
  usage: Usage | null;
  finishReason: FinishReasonOpenAI;
}

let sessions = 0;

export class ChatSession {
  info: EngineInfo | null = null;
  private engine: ChatEngine | null = null;
  private readonly tag = `chat${++sessions}`;
  private messages: ChatMessage[] = [];
  /** The answer streaming now, and the engine it streams from. */
  private current: { id: string; engine: ChatEngine } | null = null;
  private stopping = false;
  private counter = 0;

  constructor(private readonly engines: ChatEngineFactory) {}

  get busy(): boolean {
    return this.current !== null;
  }

  /**
   * Loads (or replaces) the model; the conversation starts over. `engines`
   * overrides the session's factory for this load (a remote server's).
   */
  async load(modelRef: string, onProgress: (p: LoadProgress) => void, engines: ChatEngineFactory = this.engines): Promise<EngineInfo> {
    this.stop();
    this.engine = null;
    this.info = null;
    this.messages = [];
    const engine = await engines(modelRef, onProgress);
    this.info = await engine.info();
    this.engine = engine;
    return this.info;
  }

  /** Asks `text` (about `image`, if any) after the conversation so far; onToken gets each piece of the answer. */
  async ask(text: string, image: Blob | null, opts: AskOptions, onToken: (text: string) => void): Promise<Answer> {
    const { info, engine } = this;
    if (!info || !engine) throw new Error('No model is loaded yet: wait for it to load, or pick another one.');
    if (this.current) throw new Error('An answer is still streaming: wait for it or press Stop first.');
    if (image && !info.vision) {
      throw new Error(`${info.modelId} reads text only: it cannot look at images. Remove the image, or pick a vision model (e.g. tiny-vlm-shapes).`);
    }
    const content: string | ContentPart[] = image ? [{ type: 'image', image }, { type: 'text', text }] : text;
    const turn: ChatMessage = { role: 'user', content };
    const system: ChatMessage[] = opts.systemPrompt ? [{ role: 'system', content: opts.systemPrompt }] : [];
    const id = `${this.tag}-${++this.counter}`;
    this.current = { id, engine };
    const answer: Answer = { text: '', usage: null, finishReason: 'stop' };
    try {
      const stream = await engine.chat.completions.create({
        messages: [...system, ...this.messages, turn],
        stream: true,
        max_tokens: opts.maxTokens,
        temperature: opts.temperature,
        request_id: id,
        ...(opts.compression && opts.compression.press !== 'none' && opts.compression.ratio > 0 ? { kv_compression: opts.compression } : {}),
        ...(opts.cachePrefix && hasImage([...this.messages, turn]) ? { cache_prefix: opts.cachePrefix } : {}),
      });
      for await (const chunk of stream) {
        if (this.stopping) { // Stop was pressed before the Worker knew the request: abort it now
          this.stopping = false;
          this.stop();
        }
        const choice = chunk.choices[0];
        const delta = choice?.delta.content ?? '';
        if (delta) {
          answer.text += delta;
          onToken(delta);
        }
        if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
        if (chunk.usage) answer.usage = chunk.usage;
      }
    } finally {
      this.current = null;
      this.stopping = false;
    }
    // only a turn that was answered joins the conversation: after an error the chat goes on without it
    this.messages.push(turn, { role: 'assistant', content: answer.text });
    return answer;
  }

  /** Stops the answer being streamed (it ends with finish reason 'abort'). */
  stop(): void {
    const current = this.current;
    if (!current) return;
    void current.engine.abort(current.id).then((found) => {
      if (!found && this.current === current) this.stopping = true; // not started in the engine yet: retry on its first chunk
    }, () => false);
  }

  newChat(): void {
    this.stop();
    this.messages = [];
  }

  /** The engine's counters; rejects before a model is loaded, or for an engine that keeps none. */
  async stats(): Promise<EngineStats> {
    if (!this.engine) throw new Error('No model is loaded yet.');
    if (!this.engine.stats) throw new Error('This engine keeps no counters (a remote server such as vLLM reports none).');
    return this.engine.stats();
  }

  /** Deletes the stored (IndexedDB) KV caches of the loaded model; resolves with how many entries went (0 for an engine that stores none). */
  async clearStoredCaches(): Promise<number> {
    return (await this.engine?.cache?.clear()) ?? 0;
  }
}

function hasImage(messages: ChatMessage[]): boolean {
  return messages.some((m) => typeof m.content !== 'string' && m.content.some((p) => p.type !== 'text'));
}
