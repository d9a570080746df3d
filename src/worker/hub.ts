/**
 * The engine hub: the Worker side of every connection. Clients come and go
 * (one for a dedicated Worker, one per port for a SharedWorker); engines are
 * shared between them by reference count, keyed by model + load options.
 *
 *   connect() ──▶ client c1 ──holds──▶ SharedEngine "/models/a {…}" (2 holders) ──▶ Engine
 *   connect() ──▶ client c2 ──holds──┘
 *   connect() ──▶ client c3 ──holds──▶ SharedEngine "/models/b {…}" (1 holder)  ──▶ Engine
 *
 * Request ids are per client: the engine sees `<client>/<id>`, the client its
 * own `<id>` (chunks and completions carry it), so clients never collide and
 * one client cannot abort another's request. When the last holder releases an
 * engine (another load, or close()), it is destroyed. The hub counts the
 * engine loads it starts (`engineLoads`): two tabs on one model load it once.
 *
 * A client closes when its page says so (close()), or when its page is gone:
 * the page holds a Web Lock for its lifetime and watchLock(name) has the hub
 * wait for the same lock; the browser grants it when the page's document
 * dies (closed, reloaded, crashed), and the client closes (see client.ts).
 *
 *   dedicated Worker:  exposeConnection(workerHub('dedicated', …), self)      (engine.worker.ts)
 *   SharedWorker:      onconnect = (e) => exposeConnection(hub, e.ports[0])   (shared.worker.ts)
 */
import * as Comlink from 'comlink';
import type { EngineCache } from '../api/cache.ts';
import type { ChatCompletionsApi } from '../api/chat-engine.ts';
import type { LoadProgress } from '../api/chat-types.ts';
import type { ChatCompletion, ChatCompletionRequest } from '../api/openai-types.ts';
import type { EngineInfo, EngineStats } from '../api/stats.ts';
import type { EngineOptions } from '../engine/options.ts';
import type { ChunkCallback, EngineConnection, HubStats, ProgressCallback, WorkerKind, WorkerLoadOptions, WorkerProbe } from './protocol.ts';

/** What the hub needs of an engine: the in-process `Engine`'s surface (a fake one in tests). */
export interface HubEngine {
  readonly modelId: string;
  readonly chat: { readonly completions: ChatCompletionsApi };
  abort(requestId: string): Promise<boolean>;
  info(): Promise<EngineInfo>;
  stats(): Promise<EngineStats>;
  resetStats(): void;
  readonly cache: EngineCache;
  destroy(): Promise<void>;
}

/** Builds an engine: `(ref, opts) => Engine.load(gpu, ref, opts)` in the Worker. */
export type EngineLoader = (modelRef: string, opts: EngineOptions) => Promise<HubEngine>;

/** Whether the hub can run an engine: a WebGPU adapter (and device) where it runs. */
export type GpuProbe = () => Promise<{ gpu: boolean; error: string | null }>;

/** The part of the Web Locks API the hub uses (`navigator.locks`; a fake in Node tests). */
export interface LockRequester {
  request(name: string, options: { signal: AbortSignal }, callback: () => unknown): Promise<unknown>;
}

export interface HubOptions {
  /** Where the hub runs, as stats() and probe() report it (default 'dedicated'). */
  kind?: WorkerKind;
  /** For probe(): default, whether `navigator.gpu` gives an adapter. */
  probeGpu?: GpuProbe;
  /** For watchLock(): default `navigator.locks`; null: not watched (watchLock resolves false). */
  locks?: LockRequester | null;
  /** The lock this Worker holds for its lifetime, for lifeLock() (default none: null). */
  lifeLock?: Promise<string | null>;
}

export interface HubSnapshot {
  kind: WorkerKind;
  clients: string[];
  /** Engine loads started since the hub began (failed ones included). */
  engineLoads: number;
  engines: { key: string; modelRef: string; holders: string[]; loaded: boolean }[];
}

export class EngineHub {
  readonly kind: WorkerKind;
  readonly locks: LockRequester | null;
  readonly probeGpu: GpuProbe;
  readonly lifeLock: Promise<string | null>;
  private readonly engines = new Map<string, SharedEngine>();
  private readonly clients = new Set<Client>();
  private clientCounter = 0;
  private loads = 0;

  constructor(private readonly loadEngine: EngineLoader, options: HubOptions = {}) {
    this.kind = options.kind ?? 'dedicated';
    this.probeGpu = options.probeGpu ?? probeNavigatorGpu;
    this.lifeLock = options.lifeLock ?? Promise.resolve(null);
    this.locks = options.locks !== undefined ? options.locks : ((globalThis.navigator as Navigator | undefined)?.locks ?? null);
  }

  /**
   * A new client: the object to expose over one port (or to call in-process).
   * `onGone` runs after the client closed because its page went away (watchLock).
   */
  connect(onGone?: () => void): EngineConnection {
    const client = new Client(this, `c${++this.clientCounter}`, onGone);
    this.clients.add(client);
    return client.connection();
  }

  /** Engine loads started since the hub began (a load joined by another client is not counted again). */
  get engineLoads(): number {
    return this.loads;
  }

  get connections(): number {
    return this.clients.size;
  }

  /** Who is connected and which engines they hold (tests, the console). */
  snapshot(): HubSnapshot {
    return {
      kind: this.kind,
      clients: [...this.clients].map((c) => c.id),
      engineLoads: this.loads,
      engines: [...this.engines.values()].map((e) => ({ key: e.key, modelRef: e.modelRef, holders: [...e.holders].map((c) => c.id), loaded: e.engine !== null })),
    };
  }

  debugString(): string {
    const s = this.snapshot();
    return [
      `${s.kind} hub, ${s.engineLoads} engine load(s); clients: ${s.clients.join(' ') || '–'}`,
      ...s.engines.map((e) => `engine ${e.key} held by ${e.holders.join(' ')}${e.loaded ? '' : ' (loading)'}`),
    ].join('\n');
  }

  // ---------------------------------------------------------------- for clients

  /** The engine for (ref, opts): the one already there (loaded or loading), or a new load. */
  acquire(client: Client, modelRef: string, opts: WorkerLoadOptions): SharedEngine {
    const key = engineKey(modelRef, opts);
    let shared = this.engines.get(key);
    if (!shared) {
      this.loads++;
      const created = new SharedEngine(key, modelRef, (onProgress) => this.loadEngine(modelRef, { ...opts, onProgress }));
      created.ready.catch(() => this.forget(created)); // a failed load is not kept: the next load tries again
      this.engines.set(key, created);
      shared = created;
    }
    shared.holders.add(client);
    return shared;
  }

  /** Drops the client's hold; the last holder's release destroys the engine (after its load, if still loading). */
  async release(client: Client, shared: SharedEngine): Promise<void> {
    if (!shared.holders.delete(client) || shared.holders.size > 0) return;
    this.forget(shared);
    const engine = await shared.ready.catch(() => null);
    await engine?.destroy();
  }

  disconnected(client: Client): void {
    this.clients.delete(client);
  }

  private forget(shared: SharedEngine): void {
    if (this.engines.get(shared.key) === shared) this.engines.delete(shared.key);
  }
}

/** One engine and who holds it; progress of its load goes to every client waiting for it. */
class SharedEngine {
  readonly holders = new Set<Client>();
  readonly ready: Promise<HubEngine>;
  engine: HubEngine | null = null;
  private readonly listeners = new Set<ProgressCallback>();

  constructor(readonly key: string, readonly modelRef: string, load: (onProgress: ProgressCallback) => Promise<HubEngine>) {
    this.ready = load((p) => {
      for (const l of this.listeners) {
        try {
          void Promise.resolve(l(p)).catch(() => {}); // a client gone mid-load misses its progress, nothing else
        } catch {
          // as above
        }
      }
    }).then((e) => (this.engine = e));
  }

  /** Resolves with the engine once loaded; `onProgress` hears the load's progress until then. */
  async loaded(onProgress?: ProgressCallback): Promise<HubEngine> {
    if (this.engine) return this.engine;
    if (onProgress) this.listeners.add(onProgress);
    try {
      return await this.ready;
    } finally {
      if (onProgress) this.listeners.delete(onProgress);
    }
  }
}

/** A request of a client's, from createCompletion() until its answer is delivered. */
interface Running {
  engine: HubEngine;
  stream: boolean;
  started: boolean; //        the engine has it (for a stream: create() resolved)
  abortRequested: boolean; // abort() came; a stream not yet started is aborted as it starts
  abortedAtStart: boolean;
}

/** One connection: its engine hold, its running requests, its loads in order. */
class Client {
  private shared: SharedEngine | null = null;
  private readonly running = new Map<string, Running>();
  private loads: Promise<unknown> = Promise.resolve();
  private requestCounter = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  private lockWatch: AbortController | null = null;
  private markGone!: (gone: true) => void;
  /** Resolves (with true) when the client closes: a stream stops waiting for a callback that will never answer. */
  private readonly gone = new Promise<true>((resolve) => (this.markGone = resolve));

  constructor(private readonly hub: EngineHub, readonly id: string, private readonly onGone?: () => void) {}

  /** The protocol's methods, bound: exactly what crosses the port, nothing else of the client. */
  connection(): EngineConnection {
    return {
      load: (ref, opts, onProgress) => this.load(ref, opts ?? {}, onProgress),
      createCompletion: (req, onChunk) => this.createCompletion(req, onChunk),
      abort: (id) => this.abort(id),
      info: async () => this.engine().info(),
      stats: () => this.stats(),
      resetStats: async () => this.engine().resetStats(),
      cacheList: () => this.engine().cache.list(),
      cacheClear: () => this.engine().cache.clear(),
      cacheUsage: () => this.engine().cache.usage(),
      probe: () => this.probe(),
      watchLock: async (name) => this.watchLock(name),
      lifeLock: () => this.hub.lifeLock,
      close: () => this.close(),
    };
  }

  // ---------------------------------------------------------------- the protocol

  load(modelRef: string, opts: WorkerLoadOptions, onProgress?: ProgressCallback): Promise<EngineInfo> {
    const run = this.loads.then(() => this.doLoad(modelRef, opts, onProgress));
    this.loads = run.catch(() => {});
    return run;
  }

  async createCompletion(req: ChatCompletionRequest, onChunk?: ChunkCallback): Promise<ChatCompletion | null> {
    const engine = this.engine();
    const own = req.request_id ?? `req-${++this.requestCounter}`;
    if (this.running.has(own)) throw new Error(`a request with id '${own}' is already running; request ids must be unique`);
    const run: Running = { engine, stream: req.stream === true, started: false, abortRequested: false, abortedAtStart: false };
    this.running.set(own, run);
    const asEngine = { ...req, request_id: this.engineId(own) };
    try {
      if (!req.stream) return { ...(await engine.chat.completions.create({ ...asEngine, stream: false })), id: own };
      const stream = await engine.chat.completions.create({ ...asEngine, stream: true });
      run.started = true;
      if (run.abortRequested || this.closed) run.abortedAtStart = await engine.abort(asEngine.request_id);
      for await (const chunk of stream) {
        // awaiting each callback keeps chunks ahead of the final reply: a proxied
        // callback has its own message port, so nothing else orders them
        const gone = await Promise.race([Promise.resolve(onChunk?.({ ...chunk, id: own })).then(() => false), this.gone]);
        if (gone) break; // leaving the stream aborts the request
      }
      return null;
    } finally {
      this.running.delete(own);
    }
  }

  /** The engine's counters; `clients`: the clients holding this engine; `engineLoads`: the hub's. */
  async stats(): Promise<HubStats> {
    const engine = this.engine();
    const holders = this.shared!.holders;
    const stats: EngineStats = await engine.stats();
    return { ...stats, clients: holders.size, engineLoads: this.hub.engineLoads, worker: this.hub.kind };
  }

  async probe(): Promise<WorkerProbe> {
    this.ensureOpen();
    const { gpu, error } = await this.hub.probeGpu().catch((e: unknown) => ({ gpu: false, error: errorText(e) }));
    const webgpu = 'gpu' in ((globalThis.navigator as Navigator | undefined) ?? {});
    return { kind: this.hub.kind, webgpu, gpu, error, clients: this.hub.connections, engineLoads: this.hub.engineLoads };
  }

  /**
   * Closes this client once the Web Lock `name` is granted to the hub: its
   * page holds it while it lives, so the grant means the page is gone. A
   * second call replaces the first; close() stops waiting.
   */
  watchLock(name: string): boolean {
    this.ensureOpen();
    if (!this.hub.locks) return false;
    this.lockWatch?.abort();
    const watch = new AbortController();
    this.lockWatch = watch;
    this.hub.locks
      .request(name, { signal: watch.signal }, () => {
        if (!watch.signal.aborted) void this.close().then(() => this.onGone?.());
      })
      .catch(() => {}); // AbortError: closed (or re-watched) before the page went
    return true;
  }

  async abort(requestId: string): Promise<boolean> {
    const run = this.running.get(requestId);
    if (!run) return false;
    run.abortRequested = true;
    const found = await run.engine.abort(this.engineId(requestId));
    return found || (run.stream && (!run.started || run.abortedAtStart));
  }

  /** Aborts this client's requests and releases its engine; later calls are refused. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.markGone(true);
      this.lockWatch?.abort();
      this.hub.disconnected(this);
      await this.abortAll();
      await this.releaseEngine();
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------- helpers

  private async doLoad(modelRef: string, opts: WorkerLoadOptions, onProgress?: ProgressCallback): Promise<EngineInfo> {
    this.ensureOpen();
    await this.abortAll(); // requests belong to the model they were asked of
    if (this.shared?.key !== engineKey(modelRef, opts)) {
      await this.releaseEngine(); // before loading: two models need not fit at once
      this.ensureOpen();
      this.shared = this.hub.acquire(this, modelRef, opts);
    }
    const shared = this.shared;
    // a proxied callback has its own port: wait for the last progress report
    // to be heard, so that it reaches the page before load()'s reply
    let heard: Promise<unknown> = Promise.resolve();
    const hear = onProgress && ((p: LoadProgress) => void (heard = Promise.resolve(onProgress(p)).catch(() => {})));
    let engine: HubEngine;
    try {
      engine = await shared.loaded(hear);
      await Promise.race([heard, this.gone]);
    } catch (e) {
      if (this.shared === shared) await this.releaseEngine();
      throw e;
    }
    if (this.shared !== shared) throw new Error(`the connection closed while ${modelRef} was loading`);
    return engine.info();
  }

  private engine(): HubEngine {
    this.ensureOpen();
    const engine = this.shared?.engine;
    if (!engine) throw new Error('no model is loaded: call load() first');
    return engine;
  }

  private engineId(own: string): string {
    return `${this.id}/${own}`;
  }

  private async abortAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.abort(id)));
  }

  private async releaseEngine(): Promise<void> {
    const shared = this.shared;
    this.shared = null;
    if (shared) await this.hub.release(this, shared);
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error('this engine connection is closed');
  }
}

/**
 * Exposes a new client of `hub` over `endpoint` (a SharedWorker's port, a
 * MessageChannel port, a dedicated Worker's `self`): when the page releases
 * its proxy, the client closes; when its page is gone (watchLock), a port is
 * closed too (never `self`: that would end a dedicated Worker).
 */
export function exposeConnection(hub: EngineHub, endpoint: Comlink.Endpoint): EngineConnection {
  const isPort = typeof MessagePort !== 'undefined' && endpoint instanceof MessagePort;
  const connection = hub.connect(isPort ? () => (endpoint as MessagePort).close() : undefined);
  Comlink.expose({ ...connection, [Comlink.finalizer]: () => void connection.close() }, endpoint);
  return connection;
}

/**
 * The hub of a Worker entry (engine.worker.ts, shared.worker.ts): one GPU
 * device for all its engines, acquired on first need (a probe or a load) and
 * again after a failure (no adapter now is not no adapter forever); probe()
 * reports whether it could be had.
 */
export function workerHub<G>(
  kind: WorkerKind,
  acquire: () => Promise<G>,
  load: (gpu: G, modelRef: string, opts: EngineOptions) => Promise<HubEngine>,
  more: { isLost?: (gpu: G) => boolean; lifeLock?: Promise<string | null> } = {},
): EngineHub {
  let gpu: Promise<G> | null = null;
  let had: G | null = null; // a lost device is acquired again for the next load
  const device = () => {
    if (had !== null && more.isLost?.(had)) gpu = had = null;
    return (gpu ??= acquire().then(
      (g) => (had = g),
      (e: unknown) => {
        gpu = null;
        throw e;
      },
    ));
  };
  const probeGpu: GpuProbe = () => device().then(() => ({ gpu: true, error: null }), (e: unknown) => ({ gpu: false, error: errorText(e) }));
  return new EngineHub(async (ref, opts) => load(await device(), ref, opts), { kind, probeGpu, ...(more.lifeLock ? { lifeLock: more.lifeLock } : {}) });
}

/** The default GPU probe: an adapter from `navigator.gpu`, where there is one. */
async function probeNavigatorGpu(): Promise<{ gpu: boolean; error: string | null }> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return { gpu: false, error: 'no navigator.gpu here' };
  const adapter = await gpu.requestAdapter();
  return adapter ? { gpu: true, error: null } : { gpu: false, error: 'no WebGPU adapter' };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The identity of an engine: model ref + load options, keys sorted (so {a, b} and {b, a} share). */
export function engineKey(modelRef: string, opts: WorkerLoadOptions): string {
  return `${modelRef} ${stableJson(opts)}`;
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
