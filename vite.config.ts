import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// COOP/COEP make the page cross-origin isolated (SharedArrayBuffer, threads
// for onnxruntime-web); a secure context (127.0.0.1) is needed for WebGPU.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  server: { host: '127.0.0.1', headers: isolation },
  preview: { host: '127.0.0.1', headers: isolation },
  worker: { format: 'es' },
  // pre-bundled up front: discovering them at first import makes Vite re-optimize and reload the page
  optimizeDeps: { include: ['@huggingface/transformers', 'comlink', 'onnxruntime-web/webgpu', '@wllama/wllama'] },
  build: {
    target: 'es2022',
    rollupOptions: {
      input: {
        main: resolve(import.meta.dirname, 'index.html'),
        bench: resolve(import.meta.dirname, 'bench/page.html'),
        embed: resolve(import.meta.dirname, 'examples/embed.html'),
      },
    },
  },
});
