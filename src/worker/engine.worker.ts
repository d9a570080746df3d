/// <reference lib="webworker" />
/**
 * The dedicated engine Worker: one hub, one connection (the page that made
 * it). The engine lives here so the page's thread never waits on the GPU or
 * the model; the page reaches it only through comlink (protocol.ts). It ends
 * with its page (terminate(), or the page closing), so it needs no lock.
 *
 * shared.worker.ts is the same hub with one connection per tab's port.
 */
import { acquireGpu } from '../gpu/device.ts';
import { Engine } from '../engine/engine.ts';
import { exposeConnection, workerHub } from './hub.ts';

const hub = workerHub('dedicated', () => acquireGpu(), (gpu, ref, opts) => Engine.load(gpu, ref, opts));

exposeConnection(hub, self);
