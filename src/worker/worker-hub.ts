/**
 * The hub both engine Workers run (engine.worker.ts, shared.worker.ts): the
 * engine on this Worker's WebGPU device, acquired again once lost; the
 * Worker's lifetime lock held (life-lock.ts). It also sets `self.fastcache`,
 * a hook for tests and DevTools: `loseDevice()` destroys the device under the
 * engine loaded last, as a driver reset would.
 */
import { acquireGpu } from '../gpu/device.ts';
import type { Gpu } from '../gpu/context.ts';
import { Engine } from '../engine/engine.ts';
import { workerHub, type EngineHub } from './hub.ts';
import type { WorkerKind } from './protocol.ts';
import { holdWorkerLock } from './life-lock.ts';

export interface WorkerHook {
  hub: EngineHub;
  /** Destroys the device under the engine loaded last (false: none loaded yet). */
  loseDevice(): boolean;
}

export function engineWorkerHub(kind: WorkerKind): EngineHub {
  let last: Engine | null = null;
  const hub = workerHub<Gpu>(
    kind,
    () => acquireGpu(),
    async (gpu, ref, opts) => {
      last = await Engine.load(gpu, ref, opts);
      return last;
    },
    { isLost: (gpu) => gpu.lostReason !== null, lifeLock: holdWorkerLock() },
  );
  const hook: WorkerHook = {
    hub,
    loseDevice: () => {
      last?.gpu.device.destroy();
      return last !== null;
    },
  };
  (globalThis as { fastcache?: WorkerHook }).fastcache = hook;
  return hub;
}
