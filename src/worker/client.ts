/**
 * The page's handle on the engine Worker: the same `chat.completions.create`
 * as the in-process Engine, with streams rebuilt from comlink callbacks.
 *
 *   const engine = await WorkerEngine.create();
 *   await engine.load('/models/stories260K', { onProgress: (p) => … });
 *   for await (const c of await engine.chat.completions.create({ messages, stream: true })) …
 */
import * as Comlink from 'comlink';
import { AsyncQueue } from '../engine/async-queue.ts';
import type { LoadProgress } from '../engine/types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../engine/openai-types.ts';
import type { EngineStats } from '../scheduler/metrics.ts';
import type { EngineWorkerApi, LoadedInfo, WorkerLoadOptions } from './protocol.ts';

let clientCounter = 0;

export class WorkerEngine {
  readonly chat = { completions: { create: this.create.bind(this) as WorkerEngine['create'] } };

  private constructor(
    private readonly worker: Worker,
    private readonly remote: Comlink.Remote<EngineWorkerApi>,
  ) {}

  static create(worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module' })): WorkerEngine {
    return new WorkerEngine(worker, Comlink.wrap<EngineWorkerApi>(worker));
  }

  load(modelRef: string, { onProgress, ...opts }: WorkerLoadOptions & { onProgress?: (p: LoadProgress) => void } = {}): Promise<LoadedInfo> {
    return this.remote.load(modelRef, opts, onProgress ? Comlink.proxy(onProgress) : undefined);
  }

  abort(requestId: string): Promise<boolean> {
    return this.remote.abort(requestId);
  }

  stats(): Promise<EngineStats> {
    return this.remote.stats();
  }

  resetStats(): Promise<void> {
    return this.remote.resetStats();
  }

  terminate(): void {
    this.remote[Comlink.releaseProxy]();
    this.worker.terminate();
  }

  private create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  private create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (!req.stream) return (await this.remote.createCompletion(req)) as ChatCompletion;
    const id = req.request_id ?? `page-${Date.now().toString(36)}-${++clientCounter}`;
    const queue = new AsyncQueue<ChatCompletionChunk, void>();
    let arrived!: () => void;
    const firstChunk = new Promise<void>((resolve) => (arrived = resolve));
    const done = this.remote.createCompletion({ ...req, request_id: id }, Comlink.proxy((c: ChatCompletionChunk) => {
      queue.push(c);
      arrived();
    }));
    done.then(() => queue.end(), (e: unknown) => queue.fail(e));
    // a request the engine refuses rejects before any chunk: let create() itself throw
    await Promise.race([done, firstChunk]);
    return this.rest(queue, id);
  }

  private async *rest(queue: AsyncQueue<ChatCompletionChunk, void>, id: string): AsyncGenerator<ChatCompletionChunk> {
    let finished = false;
    try {
      for await (const c of queue) yield c;
      finished = true;
    } finally {
      if (!finished) void this.remote.abort(id);
    }
  }
}
