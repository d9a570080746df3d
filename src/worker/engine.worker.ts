/// <reference lib="webworker" />
/**
 * The dedicated engine Worker: one hub, one connection (the page that made
 * it). The engine lives here so the page's thread never waits on the GPU or
 * the model; the page reaches it only through comlink (protocol.ts). It ends
 * with its page (terminate(), or the page closing), so it needs no lock.
 *
 * shared.worker.ts is the same hub with one connection per tab's port.
 */
import { exposeConnection } from './hub.ts';
import { engineWorkerHub } from './worker-hub.ts';

exposeConnection(engineWorkerHub('dedicated'), self);
