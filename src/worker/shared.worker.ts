/// <reference lib="webworker" />
/**
 * The origin's SharedWorker: ONE engine hub for every tab (and every
 * <fastcache-chat>) of the origin that asks for the shared engine
 * (`WorkerEngine.create({ shared: true })`). Each `new SharedWorker(…)` in a
 * page connects a port; each port is one hub client. Engines are shared by
 * model + options, so a model is loaded once, with one KV pool and one
 * prefix cache for all tabs: a tab asking about an image another tab sent
 * reuses that tab's KV pages and image features.
 *
 *   tab 1 ── port ──▶ client c1 ──┐
 *   tab 2 ── port ──▶ client c2 ──┴─▶ engine "/models/tiny-vlm-shapes {…}" ──▶ one GPUDevice
 *
 * A closed or reloaded tab sends nothing: its client closes when the hub is
 * granted the Web Lock the tab held (watchLock, see client.ts), which aborts
 * the tab's requests and frees their pages; other tabs go on. The worker
 * lives while a tab is connected; when the last one goes, the browser ends
 * it, and the GPU memory with it.
 */
import { exposeConnection } from './hub.ts';
import { engineWorkerHub } from './worker-hub.ts';

const scope = self as unknown as SharedWorkerGlobalScope & { fastcacheHub?: unknown };
const hub = engineWorkerHub('shared');
scope.fastcacheHub = hub; // for DevTools (chrome://inspect/#workers): fastcacheHub.debugString()

scope.onconnect = (e) => exposeConnection(hub, e.ports[0]);
