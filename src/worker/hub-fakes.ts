/**
 * Test support for the hub's tests (no GPU): a fake engine with the Engine's
 * surface, a loader of them, a fake Web Locks manager, stream helpers.
 */
import type { EngineLoader, HubEngine, LockRequester } from './hub.ts';
import type { EngineCache } from '../api/cache.ts';
import type { EngineConnection } from './protocol.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { ChatCompletionsApi } from '../api/chat-engine.ts';
import type { EngineInfo, EngineStats } from '../api/stats.ts';
import type { EngineOptions } from '../engine/options.ts';

export const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** The Engine's surface, in memory: "prepares" for a tick, then streams one word per tick. */
export class FakeEngine implements HubEngine {
  readonly seen: string[] = []; //      request ids as the engine saw them
  readonly active = new Set<string>();
  readonly aborted = new Set<string>();
  destroyed = false;
  resets = 0;
  readonly chat: { completions: ChatCompletionsApi } = { completions: { create: ((req: ChatCompletionRequest) => this.create(req)) as ChatCompletionsApi['create'] } };
  private counter = 0;

  constructor(readonly modelId: string, readonly opts: EngineOptions) {}

  async abort(id: string): Promise<boolean> {
    await tick();
    if (!this.active.has(id)) return false;
    this.aborted.add(id);
    return true;
  }

  async info(): Promise<EngineInfo> {
    return { modelId: this.modelId, architecture: 'fake', parameters: 1, weightDtype: 'f32', kvDtype: this.opts.kvDtype ?? 'f32', adapter: 'none', kvPages: this.opts.kvPages ?? 8, kvPageBytes: 1024, pageSize: 16, maxPositions: 4096, vision: false, visionBackend: null, randomWeights: true };
  }

  async stats(): Promise<EngineStats> {
    return { requestsRunning: this.active.size } as EngineStats;
  }

  resetStats(): void {
    this.resets++;
  }

  /** Nothing stored: a fake keeps no KV. */
  readonly cache: EngineCache = {
    list: async () => [],
    clear: async () => 0,
    usage: async () => ({ gpu: { pages: 0, cachedPages: 0, bytes: 0 }, cpu: null, stored: null }),
  };

  async destroy(): Promise<void> {
    await tick();
    this.destroyed = true;
  }

  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (this.destroyed) throw new Error('engine destroyed');
    await tick(); // prepare (tokenize, images)
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw new TypeError("'messages' must be a non-empty array of {role, content}");
    const id = req.request_id ?? `req-${++this.counter}`;
    if (this.active.has(id)) throw new Error(`a request with id '${id}' is already running`);
    this.active.add(id);
    this.seen.push(id);
    const stream = this.stream(id, req.max_tokens ?? 16);
    if (req.stream) return stream;
    let content = '';
    let finish: ChatCompletionChunk['choices'][0]['finish_reason'] = null;
    for await (const c of stream) {
      content += c.choices[0].delta.content ?? '';
      finish = c.choices[0].finish_reason ?? finish;
    }
    return { id, object: 'chat.completion', created: 0, model: this.modelId, choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish!, logprobs: null }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, extra: {} as never } };
  }

  private async *stream(id: string, n: number): AsyncGenerator<ChatCompletionChunk> {
    const chunk = (content: string | undefined, finish: ChatCompletionChunk['choices'][0]['finish_reason']): ChatCompletionChunk => ({
      id, object: 'chat.completion.chunk', created: 0, model: this.modelId, choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish, logprobs: null }],
    });
    let done = false;
    try {
      for (let i = 0; i < n; i++) {
        await tick();
        if (this.aborted.has(id)) {
          done = true;
          yield chunk(undefined, 'abort');
          return;
        }
        yield chunk(`w${i} `, null);
      }
      done = true;
      yield chunk(undefined, 'length');
    } finally {
      if (!done) this.aborted.add(id); // as the Engine: a caller that stops reading aborts the request
      this.active.delete(id);
    }
  }
}

/** A loader of fake engines that records what it made (and can fail a model). */
export function fakeLoader(): { load: EngineLoader; made: FakeEngine[]; calls: string[] } {
  const made: FakeEngine[] = [];
  const calls: string[] = [];
  const load: EngineLoader = async (ref, opts) => {
    calls.push(ref);
    for (const file of ['config.json', 'model.safetensors']) {
      await tick();
      opts.onProgress?.({ file, loaded: 1, total: 1 });
    }
    if (ref.includes('missing')) throw new Error(`${ref}: 404`);
    const e = new FakeEngine(ref.split('/').pop()!, opts);
    made.push(e);
    return e;
  };
  return { load, made, calls };
}

export async function collect(c: EngineConnection, req: Partial<ChatCompletionRequest>, onChunk?: (c: ChatCompletionChunk, n: number) => void | Promise<void>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  await c.createCompletion({ messages: [{ role: 'user', content: 'hi' }], stream: true, ...req }, async (x) => {
    chunks.push(x);
    await onChunk?.(x, chunks.length);
  });
  return chunks;
}

export const finish = (chunks: ChatCompletionChunk[]) => chunks.at(-1)?.choices[0].finish_reason;

/**
 * Web Locks in memory: hold(name) is a page holding its lifetime lock (until
 * the returned release(), its "tab closing"); request() is the hub waiting
 * for it, rejected with AbortError when its signal aborts first.
 */
export class FakeLocks implements LockRequester {
  private readonly held = new Map<string, Promise<void>>();
  waiting = 0;

  hold(name: string): () => void {
    let release!: () => void;
    this.held.set(name, new Promise<void>((resolve) => (release = resolve)).then(() => void this.held.delete(name)));
    return release;
  }

  async request(name: string, { signal }: { signal: AbortSignal }, callback: () => unknown): Promise<unknown> {
    const aborted = new Promise<'aborted'>((resolve) => signal.addEventListener('abort', () => resolve('aborted'), { once: true }));
    this.waiting++;
    try {
      if ((await Promise.race([this.held.get(name) ?? Promise.resolve(), aborted])) === 'aborted') throw new DOMException('aborted', 'AbortError');
    } finally {
      this.waiting--;
    }
    return callback();
  }
}
