/**
 * fastcache-web, the package: `import { … } from 'fastcache-web'`.
 *
 *   WorkerEngine   the engine in a Web Worker — one SharedWorker engine for every tab of the
 *                  origin (`create({ shared: true })`), or a dedicated Worker — what a page uses
 *   RemoteEngine   the same interface to an OpenAI-compatible server (vLLM + LMCache, `npm run serve`)
 *   Engine         the engine in this thread (a Worker of your own, or Node with the `webgpu` package)
 *   acquireGpu     a GPUDevice with the adapter's limits, for Engine.load
 *   ChatEngine …   the one interface all of them implement, and the OpenAI-shaped types
 *
 * The chat element is its own entry, `fastcache-web/chat` (it defines <fastcache-chat>).
 */
export { Engine } from './engine/engine.ts';
export type { EngineLoadOptions, EngineOptions, PreparedPrompt, PromptInput } from './engine/engine.ts';
export type { PersistOptions } from './engine/options.ts';
export type { GenerateOptions, GenerationChunk, GenerationResult, EngineEvent } from './engine/types.ts';
export { WorkerEngine, workerEngines } from './worker/client.ts';
export type { WorkerEngineOptions, WorkerEngineStats, WorkerKind } from './worker/client.ts';
export type { WorkerLoadOptions, HubStats } from './worker/protocol.ts';
export { RemoteEngine, RemoteError, remoteEngines } from './remote/remote-engine.ts';
export type { RemoteInfo, RemoteOptions } from './remote/remote-engine.ts';
export { acquireGpu } from './gpu/device.ts';
export type { Gpu } from './gpu/context.ts';
export type * from './api/index.ts';
