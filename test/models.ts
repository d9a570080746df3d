/** Where tests find the shipped models: a folder in Node, a URL under Vite in the browser. */
import { inBrowser } from './gpu.ts';

export const TINY_MODELS = ['tiny-llama-gqa', 'tiny-llama-hd32', 'tiny-qwen2', 'tiny-qwen2-sharded'] as const;

export function modelRef(name: string): string {
  return inBrowser ? `/models/${name}` : `public/models/${name}`;
}
