/**
 * The page: the chat (chat-app.ts) on the whole body, on an engine in a
 * Worker (this entry point is where it is made). By default the origin's
 * SharedWorker: every tab of the page shares one engine (the model loaded
 * once, one KV pool and prefix cache), falling back to a dedicated Worker
 * where there is no SharedWorker or it has no WebGPU. `?worker=dedicated`
 * asks for a dedicated Worker of this tab's own. `?model=` picks the model
 * to load first (tests use it). `window.fastcache.stats()` hands the
 * counters of the engine the chat uses to tests and the console;
 * `window.fastcache.engine` is the WorkerEngine (its stats() add the hub's
 * `clients`, `engineLoads` and `worker`).
 */
import { ChatApp } from './chat-app.ts';
import { plainMessage } from './errors.ts';
import { DEFAULT_MODEL } from './model-picker.ts';
import { APP_LOAD_OPTIONS, WorkerEngine, workerEngines } from '../worker/client.ts';
import type { EngineStats } from '../api/index.ts';

declare global {
  interface Window {
    fastcache?: { app: ChatApp; engine: WorkerEngine; stats(): Promise<EngineStats> };
  }
}

const params = new URLSearchParams(location.search);
const model = params.get('model') || DEFAULT_MODEL;
const engine = WorkerEngine.create({ shared: params.get('worker') !== 'dedicated' });
const app = new ChatApp(document.getElementById('app')!, { engines: workerEngines(engine, params.get('persist') === 'off' ? {} : APP_LOAD_OPTIONS), model, host: document.body, pasteTarget: document, full: true });
engine.onWorkerLost((message) => app.notice(plainMessage(message)));
window.fastcache = { app, engine, stats: () => app.session.stats() };
