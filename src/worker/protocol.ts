/**
 * What the page may ask of the engine Worker (through comlink). Only plain
 * data and comlink-proxied callbacks cross this boundary.
 */
import type { GenerateOptions, GenerationChunk, GenerationResult, LoadProgress } from '../engine/types.ts';

export interface LoadedInfo {
  modelId: string;
  architecture: string;
  parameters: number;
  adapter: string;
  kvPages: number;
  pageSize: number;
}

export interface EngineWorkerApi {
  load(modelRef: string, onProgress?: (p: LoadProgress) => void): Promise<LoadedInfo>;
  generate(prompt: string, opts: Omit<GenerateOptions, 'signal'>, onChunk: (c: GenerationChunk) => void): Promise<GenerationResult>;
  abort(): void;
}
