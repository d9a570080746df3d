/// <reference lib="webworker" />
/**
 * The engine lives here so the page's thread never waits on the GPU or the
 * model; the page reaches it only through comlink (protocol.ts).
 */
import * as Comlink from 'comlink';
import { acquireGpu } from '../gpu/device.ts';
import type { Gpu } from '../gpu/context.ts';
import { Engine } from '../engine/engine.ts';
import type { EngineWorkerApi } from './protocol.ts';

let gpu: Gpu | null = null;
let engine: Engine | null = null;

function loaded(): Engine {
  if (!engine) throw new Error('no model is loaded: call load() first');
  return engine;
}

const api: EngineWorkerApi = {
  async load(modelRef, opts, onProgress) {
    gpu ??= await acquireGpu();
    await engine?.destroy();
    engine = null;
    engine = await Engine.load(gpu, modelRef, { ...opts, ...(onProgress ? { onProgress } : {}) });
    const w = engine.model.weights;
    return {
      modelId: engine.modelId,
      architecture: engine.config.architecture,
      parameters: w.bytes / (w.dtype === 'f16' ? 2 : 4),
      adapter: `${gpu.adapter.vendor} ${gpu.adapter.architecture}`.trim(),
      kvPages: engine.pool.numPages,
      pageSize: engine.pool.pageSize,
      vision: engine.vision !== null,
      randomWeights: engine.loaded.randomWeights,
    };
  },
  async createCompletion(req, onChunk) {
    const e = loaded();
    if (!req.stream) return e.chat.completions.create({ ...req, stream: false });
    // awaiting each callback keeps chunks ahead of the final reply: a proxied
    // callback has its own message port, so nothing else orders them
    for await (const chunk of await e.chat.completions.create({ ...req, stream: true })) await onChunk?.(chunk);
    return null;
  },
  abort: (id) => loaded().abort(id),
  stats: () => loaded().stats(),
  resetStats: () => loaded().resetStats(),
};

Comlink.expose(api);
