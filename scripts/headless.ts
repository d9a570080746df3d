/**
 * A Vite dev server on this repo and a headless Chromium page on it: what the
 * benchmarks and the chat command run in (WebGPU through the browser's own
 * adapter; SwiftShader on machines without a GPU).
 */
import { resolve } from 'node:path';
import { createServer, type ViteDevServer } from 'vite';
import { chromium, type Browser, type Page } from 'playwright-core';

export const DEFAULT_FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export interface Headless {
  page: Page;
  browser: Browser;
  args: string[];
  close(): Promise<void>;
}

export async function openHeadless(path: string, opts: { browser?: string; flags?: string[] } = {}): Promise<Headless> {
  // no HMR and no file watching: an edit elsewhere in the tree must not reload the page mid-run
  const server: ViteDevServer = await createServer({ root: resolve(import.meta.dirname, '..'), logLevel: 'warn', server: { port: 0, host: '127.0.0.1', hmr: false, watch: null } });
  await server.listen();
  const address = server.httpServer!.address();
  const port = typeof address === 'object' && address ? address.port : 5173;
  const args = [...DEFAULT_FLAGS, ...(opts.flags ?? [])];
  const executablePath = opts.browser ?? process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  const browser = await chromium.launch({ executablePath, headless: true, args }).catch(async (e: Error) => {
    await server.close();
    throw new Error(`cannot start Chromium at ${executablePath} (${e.message.split('\n')[0]}); install it (apt-get install chromium) or pass --browser PATH`);
  });
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/${path}`);
  return {
    page, browser, args,
    close: async () => {
      await browser.close();
      await server.close();
    },
  };
}
