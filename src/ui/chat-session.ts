/**
 * One conversation with the engine Worker, without any DOM: loads a model,
 * keeps the messages (the whole conversation goes to the engine each turn,
 * so the engine can reuse the cached prefix, an image's KV included), streams
 * an answer, stops it. The page and <fastcache-chat> both drive one of these.
 */
import { WorkerEngine } from '../worker/client.ts';
import type { ChatMessage, CompressionOptions, ContentPart, LoadProgress } from '../engine/types.ts';
import type { FinishReasonOpenAI, Usage } from '../engine/openai-types.ts';
import type { EngineStats } from '../scheduler/metrics.ts';
import type { LoadedInfo } from '../worker/protocol.ts';

export interface AskOptions {
  maxTokens: number;
  temperature: number;
  /** Omitted, or press 'none' / ratio 0: no compression. */
  compression?: CompressionOptions;
  systemPrompt?: string;
}

export interface Answer {
  text: string;
  usage: Usage | null;
  finishReason: FinishReasonOpenAI;
}

let sessions = 0;

export class ChatSession {
  info: LoadedInfo | null = null;
  private readonly engine = WorkerEngine.create();
  private readonly tag = `chat${++sessions}`;
  private messages: ChatMessage[] = [];
  private currentId: string | null = null;
  private stopping = false;
  private counter = 0;

  get busy(): boolean {
    return this.currentId !== null;
  }

  /** Loads (or replaces) the model; the conversation starts over. */
  async load(modelRef: string, onProgress: (p: LoadProgress) => void): Promise<LoadedInfo> {
    this.stop();
    this.info = null;
    this.messages = [];
    this.info = await this.engine.load(modelRef, { onProgress });
    return this.info;
  }

  /** Asks `text` (about `image`, if any) after the conversation so far; onToken gets each piece of the answer. */
  async ask(text: string, image: Blob | null, opts: AskOptions, onToken: (text: string) => void): Promise<Answer> {
    const info = this.info;
    if (!info) throw new Error('No model is loaded yet: wait for it to load, or pick another one.');
    if (this.currentId) throw new Error('An answer is still streaming: wait for it or press Stop first.');
    if (image && !info.vision) {
      throw new Error(`${info.modelId} reads text only: it cannot look at images. Remove the image, or pick a vision model (e.g. tiny-vlm-shapes).`);
    }
    const content: string | ContentPart[] = image ? [{ type: 'image', image }, { type: 'text', text }] : text;
    const turn: ChatMessage = { role: 'user', content };
    const system: ChatMessage[] = opts.systemPrompt ? [{ role: 'system', content: opts.systemPrompt }] : [];
    const id = `${this.tag}-${++this.counter}`;
    this.currentId = id;
    const answer: Answer = { text: '', usage: null, finishReason: 'stop' };
    try {
      const stream = await this.engine.chat.completions.create({
        messages: [...system, ...this.messages, turn],
        stream: true,
        max_tokens: opts.maxTokens,
        temperature: opts.temperature,
        request_id: id,
        ...(opts.compression && opts.compression.press !== 'none' && opts.compression.ratio > 0 ? { kv_compression: opts.compression } : {}),
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
      this.currentId = null;
      this.stopping = false;
    }
    // only a turn that was answered joins the conversation: after an error the chat goes on without it
    this.messages.push(turn, { role: 'assistant', content: answer.text });
    return answer;
  }

  /** Stops the answer being streamed (it ends with finish reason 'abort'). */
  stop(): void {
    if (!this.currentId) return;
    const id = this.currentId;
    void this.engine.abort(id).then((found) => {
      if (!found && this.currentId === id) this.stopping = true; // not started in the Worker yet: retry on its first chunk
    }, () => false);
  }

  newChat(): void {
    this.stop();
    this.messages = [];
  }

  stats(): Promise<EngineStats> {
    return this.engine.stats();
  }

  terminate(): void {
    this.engine.terminate();
  }
}
