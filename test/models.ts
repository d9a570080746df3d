/** The shipped models, by the reference that works both in Node (public/models/x on disk) and in the browser (a URL under Vite). */
export const TINY_MODELS = ['tiny-llama-gqa', 'tiny-llama-hd32', 'tiny-llama-16k', 'tiny-qwen2', 'tiny-qwen2-sharded'] as const;

export function modelRef(name: string): string {
  return `/models/${name}`;
}

/** The model's config and CPU weights, as the reference forward pass takes them (the engine keeps no CPU copy). */
export async function loadCpuModel(name: string, weightDtype: 'f32' | 'f16' | 'auto' = 'auto') {
  const { loadModel } = await import('../src/model/loader.ts');
  const { resolveSource } = await import('../src/model/source.ts');
  return loadModel(resolveSource(modelRef(name)), { weightDtype });
}
