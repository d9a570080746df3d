/**
 * The page's handle on the engine Worker: a `ChatEngine` whose
 * `chat.completions.create` streams are rebuilt from comlink callbacks. One
 * WorkerEngine is one connection to the Worker's hub (protocol.ts).
 *
 *   const engine = WorkerEngine.create();                  // a dedicated Worker of its own
 *   await engine.load('/models/stories260K', { onProgress: (p) => … });
 *   for await (const c of await engine.chat.completions.create({ messages, stream: true })) …
 *   engine.terminate();
 *
 *   const shared = WorkerEngine.connect(new SharedWorker(url, { type: 'module' }).port);  // one port of a shared hub
 *   await shared.close();                                  // the hub keeps the engine for its other clients
 */
import * as Comlink from 'comlink';
import { AsyncQueue } from '../engine/async-queue.ts';
import type { ChatCompletionsApi, ChatEngine, ChatEngineFactory } from '../api/chat-engine.ts';
import type { LoadProgress } from '../api/chat-types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { EngineInfo, EngineStats } from '../api/stats.ts';
import type { EngineConnection, WorkerLoadOptions } from './protocol.ts';

let streamCounter = 0;

export class WorkerEngine implements ChatEngine {
  readonly chat: { readonly completions: ChatCompletionsApi } = { completions: { create: this.create.bind(this) as ChatCompletionsApi['create'] } };
  private closing: Promise<void> | null = null;
  private released = false;

  private constructor(
    private readonly remote: Comlink.Remote<EngineConnection>,
    /** Ends the transport: terminates a Worker of our own, closes a port. */
    private readonly end: () => void,
    private readonly ownWorker: boolean,
  ) {}

  /** A dedicated engine Worker of its own (the default), or the given one. */
  static create(worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module' })): WorkerEngine {
    return new WorkerEngine(Comlink.wrap<EngineConnection>(worker), () => worker.terminate(), true);
  }

  /** One connection over a comlink endpoint another owns: a SharedWorker's port, a MessageChannel port. */
  static connect(endpoint: Comlink.Endpoint & { close?(): void }): WorkerEngine {
    return new WorkerEngine(Comlink.wrap<EngineConnection>(endpoint), () => endpoint.close?.(), false);
  }

  /** Loads a model (or joins the hub's engine for it); this connection's running requests are aborted. */
  load(modelRef: string, { onProgress, ...opts }: WorkerLoadOptions & { onProgress?: (p: LoadProgress) => void } = {}): Promise<EngineInfo> {
    return this.remote.load(modelRef, opts, onProgress ? Comlink.proxy(onProgress) : undefined);
  }

  abort(requestId: string): Promise<boolean> {
    return this.remote.abort(requestId);
  }

  info(): Promise<EngineInfo> {
    return this.remote.info();
  }

  stats(): Promise<EngineStats> {
    return this.remote.stats();
  }

  resetStats(): Promise<void> {
    return this.remote.resetStats();
  }

  /** Ends this connection: the hub aborts its requests and releases its engine; then the transport ends. */
  close(): Promise<void> {
    this.closing ??= this.remote.close().catch(() => {}).finally(() => this.drop());
    return this.closing;
  }

  /** Ends it now: a Worker of our own is terminated (the GPU memory goes with it); a shared one is closed. */
  terminate(): void {
    if (this.ownWorker) this.drop();
    else void this.close();
  }

  private drop(): void {
    if (this.released) return;
    this.released = true;
    this.remote[Comlink.releaseProxy]();
    this.end();
  }

  private create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  private create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (!req.stream) return (await this.remote.createCompletion(req)) as ChatCompletion;
    const id = req.request_id ?? `page-${Date.now().toString(36)}-${++streamCounter}`;
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
      if (!finished) void this.remote.abort(id).catch(() => false); // left the loop early: stop it
    }
  }
}

/**
 * The factory a model picker takes: each call loads `modelRef` into the same
 * WorkerEngine (so one Worker, one model at a time) and hands it back.
 */
export function workerEngines(engine: WorkerEngine = WorkerEngine.create()): ChatEngineFactory<WorkerEngine> {
  return async (modelRef, onProgress) => {
    await engine.load(modelRef, onProgress ? { onProgress } : {});
    return engine;
  };
}
