/// <reference lib="webworker" />
/**
 * The engine lives here so the page's thread never waits on the GPU: the
 * UI talks to it only through comlink (see protocol.ts).
 */
import * as Comlink from 'comlink';
import { acquireGpu } from '../gpu/device.ts';
import type { Gpu } from '../gpu/context.ts';
import { Engine } from '../engine/engine.ts';
import type { EngineWorkerApi } from './protocol.ts';

let gpu: Gpu | null = null;
let engine: Engine | null = null;
let current: AbortController | null = null;

const api: EngineWorkerApi = {
  async load(modelRef, onProgress) {
    gpu ??= await acquireGpu();
    engine?.destroy();
    engine = null;
    engine = await Engine.load(gpu, modelRef, { ...(onProgress ? { onProgress } : {}) });
    const c = engine.config;
    return {
      modelId: modelRef,
      architecture: c.architecture,
      parameters: engine.model.weights.bytes / (engine.model.weights.dtype === 'f16' ? 2 : 4),
      adapter: `${gpu.adapter.vendor} ${gpu.adapter.architecture}`.trim(),
      kvPages: engine.pool.numPages,
      pageSize: engine.pool.pageSize,
    };
  },
  async generate(prompt, opts, onChunk) {
    if (!engine) throw new Error('no model is loaded: call load() first');
    current = new AbortController();
    try {
      return await engine.generate(prompt, { ...opts, signal: current.signal, onToken: onChunk });
    } finally {
      current = null;
    }
  },
  abort() {
    current?.abort();
  },
};

Comlink.expose(api);
