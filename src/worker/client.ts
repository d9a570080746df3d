/**
 * The page's handle on the engine Worker: a `ChatEngine` whose
 * `chat.completions.create` streams are rebuilt from comlink callbacks. One
 * WorkerEngine is one connection to a Worker's hub (protocol.ts).
 *
 *   const engine = WorkerEngine.create({ shared: true });  // the origin's SharedWorker: one engine for every tab
 *   const own = WorkerEngine.create();                     // a dedicated Worker of its own (or create(worker))
 *   await engine.load('/models/stories260K', { onProgress: (p) => … });
 *   for await (const c of await engine.chat.completions.create({ messages, stream: true })) …
 *   await engine.connected();                              // 'shared', or 'dedicated' after a fallback
 *   await engine.close();                                  // the hub keeps the engine for its other tabs
 *
 * `create({ shared: true })` returns at once and connects in the background
 * (every call waits for it): to the SharedWorker (shared.worker.ts), whose
 * probe() must report a GPU; where there is no SharedWorker, it fails to
 * start or answer, or it has no WebGPU, to a dedicated Worker instead
 * (`kind`, `fallbackReason` and `stats().worker` say which).
 *
 * Tab-close detection: a SharedWorker gets no event when a tab closes,
 * reloads or crashes, and comlink's finalizer (garbage collection of the
 * proxy) never runs then. So each shared connection holds a Web Lock named
 * by a fresh id for as long as its page lives, and asks the hub to request
 * the same lock (watchLock): the browser releases a document's locks the
 * moment it goes away, the hub is granted the lock and closes the
 * connection (its requests aborted, their pages freed, the engine released)
 * while other tabs go on. Not a heartbeat: background tabs' timers are
 * throttled to about once a minute and a busy or frozen page misses beats,
 * so a heartbeat either drops live tabs or keeps dead ones for minutes; a
 * lock needs no polling and no timeout. Where the page has no Web Locks,
 * `pagehide` closes the connection instead (best effort).
 *
 * Worker-crash detection, the other way round: the Worker holds a lock of its
 * own for its lifetime (life-lock.ts) and the page asks for it. When it is
 * granted, the Worker is gone (crashed, killed, closed itself): every call
 * waiting on it fails with a message saying so, `onWorkerLost` listeners hear
 * it, and a new Worker is started that loads the last model again.
 */
import * as Comlink from 'comlink';
import type { EngineCache } from '../api/cache.ts';
import { AsyncQueue } from '../engine/async-queue.ts';
import type { ChatCompletionsApi, ChatEngine, ChatEngineFactory } from '../api/chat-engine.ts';
import type { LoadProgress } from '../api/chat-types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { EngineInfo } from '../api/stats.ts';
import type { EngineConnection, HubStats, WorkerKind, WorkerLoadOptions, WorkerProbe } from './protocol.ts';
import { watchWorkerLock } from './life-lock.ts';

export type { WorkerKind } from './protocol.ts';

/** A dedicated Worker, or what stands for one (a test's MessagePort with terminate()). */
export type DedicatedWorkerLike = Comlink.Endpoint & { terminate(): void };
/** A SharedWorker, or what stands for one: its port (and its `error` event, where it has one). */
export type SharedWorkerLike = { readonly port: MessagePort } & Partial<Pick<EventTarget, 'addEventListener'>>;

export interface WorkerEngineOptions {
  /** true: the origin's SharedWorker, one engine for every tab (falls back to a dedicated Worker); false: a dedicated Worker. */
  shared?: boolean;
  /** Makes the SharedWorker (default: the bundled shared.worker.ts). */
  sharedWorker?: () => SharedWorkerLike;
  /** Makes the dedicated Worker (default: the bundled engine.worker.ts). */
  dedicatedWorker?: () => DedicatedWorkerLike;
  /** How long the SharedWorker may take to answer probe() before the dedicated Worker is used (default 60 s). */
  probeTimeoutMs?: number;
}

/** One connection's transport, once known. */
interface Transport {
  readonly remote: Comlink.Remote<EngineConnection>;
  readonly kind: WorkerKind;
  /** A dedicated Worker of our own (terminate() ends it), not a port of a shared one. */
  readonly ownWorker: boolean;
  /** Why a shared engine fell back to this dedicated Worker (null: it did not). */
  readonly fallbackReason: string | null;
  /** Ends it: terminates our own Worker; closes a port and releases its lifetime lock. */
  end(): void;
}

/** A transport whose Worker may die: `dead` rejects then (never resolves). */
interface Watched extends Transport {
  readonly dead: Promise<never>;
  die(e: Error): void;
  stopWatching(): void;
}

/** What stats() of a WorkerEngine reports: the engine's counters, the hub's clients and loads, the kind of Worker, and Workers restarted after one was lost. */
export type WorkerEngineStats = HubStats & { workerRestarts: number };

let streamCounter = 0;

export class WorkerEngine implements ChatEngine {
  readonly chat: { readonly completions: ChatCompletionsApi } = { completions: { create: this.create.bind(this) as ChatCompletionsApi['create'] } };
  private current: Watched | null = null;
  private transport!: Promise<Watched>;
  private closing: Promise<void> | null = null;
  private released = false;
  private lastLoad: { modelRef: string; opts: WorkerLoadOptions } | null = null;
  private readonly lostListeners = new Set<(message: string) => void>();
  /** New Workers started after one was lost. */
  restarts = 0;

  /** `make` builds the transport (again after a lost Worker; `restartable` false: a Worker given by the caller, not ours to remake). */
  private constructor(
    private readonly make: () => Transport | Promise<Transport>,
    private readonly restartable: boolean,
  ) {
    this.start();
  }

  private start(reload: { modelRef: string; opts: WorkerLoadOptions } | null = null): void {
    const made = this.make();
    if (!(made instanceof Promise)) this.current = this.watch(made); // a dedicated Worker is there at once (kind)
    this.transport = Promise.resolve(made).then(async (t) => {
      const w = this.current?.remote === t.remote ? this.current : this.watch(t);
      this.current = w;
      if (reload) await w.remote.load(reload.modelRef, reload.opts).catch((e: unknown) => console.warn(`fastcache: the new engine Worker could not load ${reload.modelRef}: ${errorText(e)}`));
      return w;
    });
    this.transport.catch(() => {}); // each call reports it
  }

  /** Adds `dead` to a transport and watches its Worker's lifetime lock. */
  private watch(t: Transport): Watched {
    let die!: (e: Error) => void;
    const dead = new Promise<never>((_, reject) => (die = reject));
    dead.catch(() => {});
    let watcher: { stop(): void } | null = null;
    const w: Watched = { ...t, dead, die, stopWatching: () => watcher?.stop() };
    void t.remote.lifeLock().then(
      (name) => {
        if (name && !this.released) watcher = watchWorkerLock(name, () => this.workerGone(w));
      },
      () => {}, // an older Worker without lifeLock: not watched
    );
    return w;
  }

  /** The Worker behind `w` is gone: fail what waits on it, tell the listeners, start a new one. */
  private workerGone(w: Watched): void {
    if (this.released || w !== this.current) return;
    const again = this.restartable ? this.lastLoad : null;
    const message = `the engine's Worker stopped (it crashed or was closed)${this.restartable ? `: a new one was started${again ? ` and loads ${again.modelRef} again` : ''}` : ''}`;
    w.die(new Error(message));
    w.remote[Comlink.releaseProxy]();
    this.current = null;
    if (this.restartable) {
      this.restarts++;
      this.start(again);
    }
    for (const l of this.lostListeners) l(message);
  }

  /** Calls `listener` with a message each time the engine's Worker is lost (a new one is being started). */
  onWorkerLost(listener: (message: string) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** `fn` on the current Worker; fails if the Worker dies before it answers. */
  private async call<T>(fn: (remote: Comlink.Remote<EngineConnection>) => Promise<T>): Promise<T> {
    const t = await this.transport;
    return Promise.race([fn(t.remote), t.dead]);
  }

  /** A dedicated engine Worker of its own (the default), or the given one. */
  static create(worker?: DedicatedWorkerLike): WorkerEngine;
  /** `{ shared: true }`: the origin's SharedWorker, or a dedicated Worker where that cannot run the engine. */
  static create(options: WorkerEngineOptions): WorkerEngine;
  static create(arg?: DedicatedWorkerLike | WorkerEngineOptions): WorkerEngine {
    const opts: WorkerEngineOptions = arg === undefined || isEndpoint(arg) ? {} : arg;
    const given = arg !== undefined && isEndpoint(arg);
    const dedicated = given ? () => arg : (opts.dedicatedWorker ?? newDedicatedWorker);
    return new WorkerEngine(() => (opts.shared ? connectShared(opts, dedicated) : dedicatedTransport(dedicated())), !given);
  }

  /** One connection over a comlink endpoint another owns (a SharedWorker's port, a MessageChannel port); no probe, no lock. */
  static connect(endpoint: Comlink.Endpoint & { close?(): void }): WorkerEngine {
    return new WorkerEngine(() => ({ remote: Comlink.wrap<EngineConnection>(endpoint), kind: 'shared', ownWorker: false, fallbackReason: null, end: () => endpoint.close?.() }), false);
  }

  /** 'shared' or 'dedicated' once connected; 'connecting' until then. */
  get kind(): WorkerKind | 'connecting' {
    return this.current?.kind ?? 'connecting';
  }

  /** Why a shared engine runs in a dedicated Worker instead (null: no fallback, or not connected yet). */
  get fallbackReason(): string | null {
    return this.current?.fallbackReason ?? null;
  }

  /** Resolves with the kind of Worker serving this engine, once connected. */
  async connected(): Promise<WorkerKind> {
    return (await this.transport).kind;
  }

  /** Loads a model (or joins the hub's engine for it); this connection's running requests are aborted. */
  async load(modelRef: string, { onProgress, ...opts }: WorkerLoadOptions & { onProgress?: (p: LoadProgress) => void } = {}): Promise<EngineInfo> {
    const info = await this.call((r) => r.load(modelRef, opts, onProgress ? Comlink.proxy(onProgress) : undefined));
    this.lastLoad = { modelRef, opts };
    return info;
  }

  abort(requestId: string): Promise<boolean> {
    return this.call((r) => r.abort(requestId));
  }

  info(): Promise<EngineInfo> {
    return this.call((r) => r.info());
  }

  /** The engine's counters, with `clients` (connections on this engine), `engineLoads` (the hub's) and `worker`. */
  async stats(): Promise<WorkerEngineStats> {
    return { ...(await this.call((r) => r.stats())), workerRestarts: this.restarts };
  }

  /** The engine's KV cache by tier, in the Worker. */
  readonly cache: EngineCache = {
    list: () => this.call((r) => r.cacheList()),
    clear: () => this.call((r) => r.cacheClear()),
    usage: () => this.call((r) => r.cacheUsage()),
  };

  resetStats(): Promise<void> {
    return this.call((r) => r.resetStats());
  }

  /** Where the engine runs and whether WebGPU works there (needs no model). */
  probe(): Promise<WorkerProbe> {
    return this.call((r) => r.probe());
  }

  /** Ends this connection: the hub aborts its requests and releases its engine; then the transport ends. */
  close(): Promise<void> {
    this.closing ??= this.transport.then(
      (t) => t.remote.close().catch(() => {}).finally(() => this.drop(t)),
      () => {},
    );
    return this.closing;
  }

  /** Ends it now: a Worker of our own is terminated (the GPU memory goes with it); a shared one is closed. */
  terminate(): void {
    const t = this.current;
    if (t?.ownWorker) this.drop(t);
    else void this.close();
  }

  private drop(t: Watched): void {
    if (this.released) return;
    this.released = true;
    t.stopWatching();
    t.remote[Comlink.releaseProxy]();
    t.end();
  }

  private create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  private create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const t = await this.transport;
    const { remote } = t;
    if (!req.stream) return (await Promise.race([remote.createCompletion(req), t.dead])) as ChatCompletion;
    const id = req.request_id ?? `page-${Date.now().toString(36)}-${++streamCounter}`;
    const queue = new AsyncQueue<ChatCompletionChunk, void>();
    let arrived!: () => void;
    const firstChunk = new Promise<void>((resolve) => (arrived = resolve));
    const done = remote.createCompletion({ ...req, request_id: id }, Comlink.proxy((c: ChatCompletionChunk) => {
      queue.push(c);
      arrived();
    }));
    done.then(() => queue.end(), (e: unknown) => queue.fail(e));
    t.dead.catch((e: unknown) => queue.fail(e));
    // a request the engine refuses rejects before any chunk: let create() itself throw
    await Promise.race([done, firstChunk, t.dead]);
    return this.rest(remote, queue, id);
  }

  private async *rest(remote: Comlink.Remote<EngineConnection>, queue: AsyncQueue<ChatCompletionChunk, void>, id: string): AsyncGenerator<ChatCompletionChunk> {
    let finished = false;
    try {
      for await (const c of queue) yield c;
      finished = true;
    } finally {
      if (!finished) void remote.abort(id).catch(() => false); // left the loop early: stop it
    }
  }
}

/**
 * The factory a model picker takes: each call loads `modelRef` into the same
 * WorkerEngine (so one connection, one model at a time) and hands it back.
 * By default the shared engine (falling back to a dedicated Worker).
 */
export function workerEngines(engine: WorkerEngine = WorkerEngine.create({ shared: true }), loadOptions: WorkerLoadOptions = {}): ChatEngineFactory<WorkerEngine> {
  return async (modelRef, onProgress) => {
    await engine.load(modelRef, { ...loadOptions, ...(onProgress ? { onProgress } : {}) });
    return engine;
  };
}

/**
 * What the chat page and <fastcache-chat> load models with: prefix pages kept
 * in IndexedDB across reloads (the same options in both, so tabs and elements
 * share one engine).
 */
export const APP_LOAD_OPTIONS: WorkerLoadOptions = { persist: { store: 'indexeddb' } };

// ------------------------------------------------------------------ transports

function newDedicatedWorker(): Worker {
  return new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'fastcache-engine' });
}

function newSharedWorker(): SharedWorker {
  return new SharedWorker(new URL('./shared.worker.ts', import.meta.url), { type: 'module', name: 'fastcache-engine' });
}

function dedicatedTransport(worker: DedicatedWorkerLike, fallbackReason: string | null = null): Transport {
  return { remote: Comlink.wrap<EngineConnection>(worker), kind: 'dedicated', ownWorker: true, fallbackReason, end: () => worker.terminate() };
}

/** The SharedWorker's connection, probed and tied to this page's lifetime; a dedicated Worker where that fails. */
async function connectShared(opts: WorkerEngineOptions, dedicated: () => DedicatedWorkerLike): Promise<Transport> {
  const fallback = (reason: string) => {
    console.info(`fastcache: using a dedicated engine Worker: ${reason}`);
    return dedicatedTransport(dedicated(), reason);
  };
  const make = opts.sharedWorker ?? (typeof SharedWorker === 'function' ? newSharedWorker : null);
  if (!make) return fallback('this browser has no SharedWorker');
  let worker: SharedWorkerLike;
  try {
    worker = make();
  } catch (e) {
    return fallback(`the SharedWorker could not start: ${errorText(e)}`);
  }
  const remote = Comlink.wrap<EngineConnection>(worker.port);
  const drop = () => {
    void remote.close().catch(() => {});
    remote[Comlink.releaseProxy]();
    worker.port.close();
  };
  let probe: WorkerProbe;
  try {
    probe = await answerWithin(remote.probe(), worker, opts.probeTimeoutMs ?? 60_000);
  } catch (e) {
    drop();
    return fallback(`the SharedWorker did not answer: ${errorText(e)}`);
  }
  if (!probe.gpu) {
    drop();
    return fallback(`the SharedWorker has no WebGPU${probe.error ? ` (${probe.error})` : ''}`);
  }
  const lock = await holdLifetimeLock();
  const watched = lock ? await remote.watchLock(lock.name) : false;
  const onPageHide = () => void remote.close().catch(() => {});
  if (!watched && typeof window !== 'undefined') window.addEventListener('pagehide', onPageHide, { once: true });
  return {
    remote,
    kind: 'shared',
    ownWorker: false,
    fallbackReason: null,
    end: () => {
      if (typeof window !== 'undefined') window.removeEventListener('pagehide', onPageHide);
      worker.port.close();
      lock?.release();
    },
  };
}

/** `p`, or a rejection when the worker reports an error (its script failed) or `ms` pass first. */
function answerWithin<T>(p: Promise<T>, worker: SharedWorkerLike, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    worker.addEventListener?.('error', () => reject(new Error('its script failed to load')), { once: true });
    p.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

/**
 * Takes a Web Lock named by a fresh id and holds it until release() or until
 * this page is gone (the browser then releases it: that is the signal the hub
 * waits for). Null where there are no Web Locks.
 */
async function holdLifetimeLock(): Promise<{ name: string; release(): void } | null> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return null;
  const id = typeof crypto !== 'undefined' && 'randomUUID' in crypto ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const name = `fastcache-web/connection/${id}`;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  try {
    await new Promise<void>((granted, refused) => {
      locks.request(name, () => {
        granted();
        return held;
      }).catch(refused);
    });
  } catch {
    return null;
  }
  return { name, release };
}

function isEndpoint(x: DedicatedWorkerLike | WorkerEngineOptions): x is DedicatedWorkerLike {
  return typeof (x as DedicatedWorkerLike).postMessage === 'function';
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
