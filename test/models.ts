/** The shipped models, by the reference that works both in Node (public/models/x on disk) and in the browser (a URL under Vite). */
export const TINY_MODELS = ['tiny-llama-gqa', 'tiny-llama-hd32', 'tiny-qwen2', 'tiny-qwen2-sharded'] as const;

export function modelRef(name: string): string {
  return `/models/${name}`;
}
