/**
 * fastcache-web, the package: `import { … } from 'fastcache-web'`.
 *
 *   WorkerEngine   the engine in a (shared or dedicated) Web Worker — what a page uses
 *   Engine         the engine in this thread (a Worker of your own, or Node with the `webgpu` package)
 *   acquireGpu     a GPUDevice with the adapter's limits, for Engine.load
 *   ChatEngine …   the one interface all of them implement, and the OpenAI-shaped types
 *
 * The chat element is its own entry, `fastcache-web/chat` (it defines <fastcache-chat>).
 */
export { Engine } from './engine/engine.ts';
export type { EngineLoadOptions, EngineOptions, PreparedPrompt, PromptInput } from './engine/engine.ts';
export type { GenerateOptions, GenerationChunk, GenerationResult, EngineEvent } from './engine/types.ts';
export { WorkerEngine, workerEngines } from './worker/client.ts';
export type { WorkerLoadOptions } from './worker/protocol.ts';
export { acquireGpu } from './gpu/device.ts';
export type { Gpu } from './gpu/context.ts';
export type * from './api/index.ts';
