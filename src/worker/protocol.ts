/**
 * The whole page ↔ Worker interface: what ONE connection (a dedicated
 * Worker's `self`, or one port of a SharedWorker) may ask of the engine hub
 * (hub.ts), through comlink.
 *
 *   page (WorkerEngine) ── comlink over one port ──▶ EngineConnection ──▶ EngineHub ──▶ Engine (shared by ref count)
 *
 * comlink tags each call with its own id and carries the reply; only plain
 * data and comlink-proxied callbacks cross. Progress and chunks go through
 * their own callbacks, apart from the call's result. Errors cross as
 * {name, message}: comlink re-throws them on the page's side as an Error
 * with that name and message (a validation RangeError keeps name 'RangeError').
 *
 * Request ids are the connection's own: the hub namespaces them, so two
 * connections may use the same id, and a connection can only abort its own.
 *
 * A page connecting to a SharedWorker first calls probe() (does WebGPU work
 * there? if not, it uses a dedicated Worker), then watchLock() with the name
 * of a Web Lock it holds for its lifetime, so that the hub closes the
 * connection when the page is gone (a SharedWorker gets no event for that).
 */
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { LoadProgress } from '../api/chat-types.ts';
import type { EngineInfo, EngineStats } from '../api/stats.ts';
import type { CacheUsage, StoredCacheEntry } from '../api/cache.ts';
import type { EngineLoadOptions } from '../engine/options.ts';

/** load()'s options: the engine's own plain-data options (no callbacks: those go as proxied arguments). */
export type WorkerLoadOptions = EngineLoadOptions;

/** A streamed chunk's callback; the hub awaits it, so chunks arrive in order and before the final reply. */
export type ChunkCallback = (chunk: ChatCompletionChunk) => void | Promise<void>;

export type ProgressCallback = (p: LoadProgress) => void;

/** Where a hub runs: the origin's SharedWorker (every tab's connections), or a page's dedicated Worker. */
export type WorkerKind = 'shared' | 'dedicated';

/** What probe() reports: a cheap call, made before load(). */
export interface WorkerProbe {
  kind: WorkerKind;
  /** `'gpu' in navigator` where the hub runs. */
  webgpu: boolean;
  /** The hub has a WebGPU adapter and device, as a load needs. */
  gpu: boolean;
  /** Why not, when `gpu` is false. */
  error: string | null;
  /** Connections to the hub now, this one included. */
  clients: number;
  /** Engine loads the hub started so far. */
  engineLoads: number;
}

/** stats() through the hub: the engine's counters and the hub's view of them. */
export interface HubStats extends EngineStats {
  /** Connections holding this engine (one per tab, or per element, that loaded it). */
  clients: number;
  /** Engine loads the hub started so far (all models): 1 when two tabs share a model loaded once. */
  engineLoads: number;
  worker: WorkerKind;
}

export interface EngineConnection {
  /**
   * Loads `modelRef` for this connection, or joins the engine another
   * connection already has for the same model and options. A different
   * model than this connection's current one releases the old engine first;
   * this connection's running requests are aborted either way. Loads of one
   * connection run one after another.
   */
  load(modelRef: string, opts: WorkerLoadOptions, onProgress?: ProgressCallback): Promise<EngineInfo>;
  /**
   * Non-streaming: resolves with the completion. Streaming: each chunk goes to
   * onChunk (awaited); resolves with null after the last one. A request the
   * engine refuses rejects before any chunk.
   */
  createCompletion(req: ChatCompletionRequest, onChunk?: ChunkCallback): Promise<ChatCompletion | null>;
  /**
   * Stops this connection's request `requestId`. True when it will end with
   * finish reason 'abort' (a stream not yet started is stopped as it starts);
   * false when no such request of this connection is running.
   */
  abort(requestId: string): Promise<boolean>;
  info(): Promise<EngineInfo>;
  /** The engine's counters (shared by every connection on it), with `clients`: the connections on it. */
  stats(): Promise<HubStats>;
  /** Restarts the engine's peak and throughput counters (for every connection on it). */
  resetStats(): Promise<void>;
  /** The engine's KV cache by tier (EngineCache): entries of the stored tier, emptying it, bytes by tier. */
  cacheList(): Promise<StoredCacheEntry[]>;
  cacheClear(): Promise<number>;
  cacheUsage(): Promise<CacheUsage>;
  /** Where the hub runs and whether it can run an engine there (WebGPU); needs no model. */
  probe(): Promise<WorkerProbe>;
  /**
   * Closes this connection (as close()) once the hub is granted the Web Lock
   * `lockName`, which the page holds for its lifetime: the grant means the
   * page is gone. False where the hub has no Web Locks (nothing is watched).
   */
  watchLock(lockName: string): Promise<boolean>;
  /**
   * The Web Lock the Worker holds for its lifetime (life-lock.ts): a page granted
   * it knows the Worker is gone. Null where it holds none (no Web Locks, in-process).
   */
  lifeLock(): Promise<string | null>;
  /** Ends the connection: its requests are aborted and its engine released (destroyed when no connection holds it). */
  close(): Promise<void>;
}
