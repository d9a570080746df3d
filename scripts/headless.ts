/**
 * A Vite dev server on this repo and a headless Chromium page on it: what the
 * benchmarks and the chat command run in (WebGPU through the browser's own
 * adapter; SwiftShader on machines without a GPU).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer, type ViteDevServer } from 'vite';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const DEFAULT_FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export interface Headless {
  page: Page;
  /** Chromium's version. */
  version: string;
  args: string[];
  /** Closes the browser and starts it again on the same profile (IndexedDB, caches kept): a browser restart, as a user's. */
  restart(): Promise<Page>;
  close(): Promise<void>;
}

/** Chromium on a fresh profile (deleted at close) with a page at `path` of a Vite server on this repo. */
export async function openHeadless(path: string, opts: { browser?: string; flags?: string[] } = {}): Promise<Headless> {
  // no HMR and no file watching: an edit elsewhere in the tree must not reload the page mid-run
  const server: ViteDevServer = await createServer({ root: resolve(import.meta.dirname, '..'), logLevel: 'warn', server: { port: 0, host: '127.0.0.1', hmr: false, watch: null } });
  await server.listen();
  const address = server.httpServer!.address();
  const port = typeof address === 'object' && address ? address.port : 5173;
  const args = [...DEFAULT_FLAGS, ...(opts.flags ?? [])];
  const executablePath = opts.browser ?? process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  const profile = mkdtempSync(join(tmpdir(), 'fastcache-headless-'));
  const cleanUp = async () => {
    await server.close();
    rmSync(profile, { recursive: true, force: true });
  };
  const start = async (): Promise<{ context: BrowserContext; page: Page }> => {
    const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
    await page.goto(`http://127.0.0.1:${port}/${path}`);
    return { context, page };
  };
  let { context, page } = await start().catch(async (e: Error) => {
    await cleanUp();
    throw new Error(`cannot start Chromium at ${executablePath} (${e.message.split('\n')[0]}); install it (apt-get install chromium) or pass --browser PATH`);
  });
  return {
    page, args,
    version: context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] ?? 'unknown')),
    restart: async () => {
      await context.close();
      ({ context, page } = await start());
      return page;
    },
    close: async () => {
      await context.close();
      await cleanUp();
    },
  };
}
