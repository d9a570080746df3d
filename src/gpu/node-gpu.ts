/**
 * Node's WebGPU: the `webgpu` package (Dawn). Kept apart from device.ts so a
 * browser bundle never imports it. On machines without a GPU it runs on the
 * SwiftShader Vulkan driver that Debian's chromium ships.
 */
import { acquireGpu } from './device.ts';
import type { Gpu } from './context.ts';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// dawn.node tears its instance down when the GPU object is garbage
// collected, even while devices made from it are alive (a crash some
// seconds later). Keep it for the life of the process.
let instance: GPU | null = null;

export async function acquireNodeGpu(): Promise<Gpu> {
  const env = process.env;
  if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES) {
    const { existsSync } = await import('node:fs');
    if (existsSync(SWIFTSHADER_ICD) && env.FASTCACHE_NATIVE_VULKAN !== '1') env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  env.XDG_RUNTIME_DIR ??= '/tmp';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  instance ??= create([]);
  return acquireGpu({ gpu: instance });
}
