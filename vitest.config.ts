import { defineConfig } from 'vitest/config';
import { playwright } from '@vitest/browser-playwright';

process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json';
process.env.XDG_RUNTIME_DIR ??= '/tmp';

const chromiumArgs = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.node.test.ts'],
          exclude: ['src/**/*.browser.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        optimizeDeps: { include: ['@huggingface/transformers', 'comlink', 'onnxruntime-web/webgpu', '@wllama/wllama'] },
        test: {
          name: 'browser',
          // Kernel and engine tests that do not read the disk run in Chromium too.
          include: ['src/**/*.test.ts', 'bench/**/*.browser.test.ts'],
          exclude: ['src/**/*.node.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({ launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: chromiumArgs } }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
