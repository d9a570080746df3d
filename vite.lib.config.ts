import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// The package build: `vite build -c vite.lib.config.ts` → dist-lib/
// fastcache-web.js (the API: WorkerEngine, Engine, acquireGpu; src/index.ts)
// and fastcache-chat.js (defines <fastcache-chat>), ES modules sharing their
// chunks, with the engine Worker and its assets (onnxruntime-web's .wasm, …)
// as separate files beside them, found at run time relative to import.meta.url (base './'),
// so the folder can be served from any path. Not `build.lib`: library mode
// inlines every asset as base64 (a 70 MB script here). Models are fetched
// from the `model` attribute's URL (bundled ones: /models/… on the host
// page's origin). Types: tsconfig.lib.json → dist-lib/types (npm run build:lib).
export default defineConfig({
  base: './',
  publicDir: false,
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    outDir: 'dist-lib',
    emptyOutDir: true,
    copyPublicDir: false,
    rollupOptions: {
      input: {
        'fastcache-web': resolve(import.meta.dirname, 'src/index.ts'),
        'fastcache-chat': resolve(import.meta.dirname, 'src/component/index.ts'),
      },
      preserveEntrySignatures: 'strict',
      output: { format: 'es', entryFileNames: '[name].js' },
    },
  },
});
