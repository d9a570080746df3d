/// <reference lib="webworker" />
/**
 * The dedicated engine Worker: one hub, one connection (the page that made
 * it). The engine lives here so the page's thread never waits on the GPU or
 * the model; the page reaches it only through comlink (protocol.ts).
 *
 * A SharedWorker entry is the same hub with one connection per port:
 *   (self as SharedWorkerGlobalScope).onconnect = (e) => exposeConnection(hub, e.ports[0]);
 */
import { acquireGpu } from '../gpu/device.ts';
import type { Gpu } from '../gpu/context.ts';
import { Engine } from '../engine/engine.ts';
import { EngineHub, exposeConnection } from './hub.ts';

let gpu: Promise<Gpu> | null = null;

const hub = new EngineHub(async (modelRef, opts) => {
  gpu ??= acquireGpu().catch((e: unknown) => {
    gpu = null; // no adapter now is not no adapter forever
    throw e;
  });
  return Engine.load(await gpu, modelRef, opts);
});

exposeConnection(hub, self);
