import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, expect, test, type BrowserContext, type Page, type Worker } from '@playwright/test';
import type { HubStats } from '../src/worker/protocol.ts';
import type { StoredCacheEntry } from '../src/api/cache.ts';
import { SHAPES_MODEL } from '../test/shapes-items.ts';
import { askAndWait } from './chat-page.ts';
import config from '../playwright.config.ts';

// The stored tier on a full disk: Chromium's quota for the origin is set
// small over CDP (Storage.overrideQuotaForOrigin) after one image's pages are
// stored; five more pictures follow. Writes that do not fit fail, the oldest
// entries go, the page keeps answering — and an image asked about again
// (its pages evicted) gets the answer it got first. Nothing is thrown at
// the page or left unhandled in the engine's Worker.

const baseURL = config.use!.baseURL!;
const launch = config.use!.launchOptions!;
const image = (i: number) => `${SHAPES_MODEL}/testset/test_${String(i).padStart(4, '0')}.png`;
const QUESTION = 'What shape is it?';

const stats = (page: Page) => page.evaluate(() => window.fastcache!.engine.stats()) as Promise<HubStats>;
const entries = (page: Page) => page.evaluate(() => window.fastcache!.engine.cache.list()) as Promise<StoredCacheEntry[]>;
const estimate = (page: Page) => page.evaluate(() => navigator.storage.estimate()) as Promise<{ usage?: number; quota?: number }>;

/** Waits until the stored tier has settled every page it was given (written or skipped). */
async function settled(page: Page): Promise<NonNullable<NonNullable<HubStats['tiers']>['stored']>> {
  let last = '';
  await expect
    .poll(async () => {
      const s = (await stats(page)).tiers!.stored!;
      const now = `${s.written}/${s.skippedWrites}/${s.evicted}`;
      const same = now === last;
      last = now;
      return same;
    }, { timeout: 30_000, intervals: [500] })
    .toBe(true);
  return (await stats(page)).tiers!.stored!;
}

async function ask(page: Page, i: number): Promise<string> {
  await page.click('#new-chat');
  await page.setInputFiles('#file', image(i));
  return (await askAndWait(page, QUESTION)).trim();
}

/** Records unhandled rejections and errors inside the engine's Worker. */
async function watch(worker: Worker): Promise<void> {
  await worker.evaluate(() => {
    const g = self as unknown as { __problems: string[] };
    g.__problems = [];
    self.addEventListener('unhandledrejection', (e) => g.__problems.push(`unhandled rejection: ${String((e as PromiseRejectionEvent).reason)}`));
    self.addEventListener('error', (e) => g.__problems.push(`error: ${(e as ErrorEvent).message}`));
  });
}

/** The chat page in a browser on `dir`, with the origin's quota set (when given) before the page first touches storage. */
async function open(dir: string, quotaSize?: number): Promise<{ context: BrowserContext; page: Page; worker: Worker; errors: string[] }> {
  const context = await chromium.launchPersistentContext(dir, { ...launch, baseURL });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
  // Chromium's IndexedDB keeps the quota it first saw for a while: the override must come before any storage use
  if (quotaSize !== undefined) await (await context.newCDPSession(page)).send('Storage.overrideQuotaForOrigin', { origin: new URL(baseURL).origin, quotaSize });
  const worker = page.waitForEvent('worker');
  await page.goto('/?worker=dedicated');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  const w = await worker;
  await watch(w);
  return { context, page, worker: w, errors };
}

test('a small quota: writes fail cleanly, the oldest entries go, serving continues, nothing unhandled', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fastcache-quota-'));
  try {
    // session 1, no limit: the model files land in the Cache API, one picture's pages in IndexedDB
    const one = await open(dir);
    const first = await ask(one.page, 0);
    const s0 = await settled(one.page);
    const firstKeys = new Set((await entries(one.page)).map((e) => e.key));
    const usage = (await estimate(one.page)).usage ?? 0;
    await one.context.close();
    expect(one.errors).toEqual([]);

    // session 2 on the same profile: room for about one more picture's pages than are stored
    const quotaSize = Math.round(usage + s0.bytes * 1.5);
    const { context, page, worker, errors } = await open(dir, quotaSize);
    try {
      console.log(`first picture: ${s0.entries} pages, ${s0.bytes} B; origin usage ${usage} B; quota set to ${quotaSize} B`);
      const answers: string[] = [];
      for (const i of [1, 2, 3, 4, 5]) {
        answers.push(await ask(page, i));
        const s = await settled(page);
        console.log(`picture ${i}: "${answers.at(-1)}" · stored ${s.entries} pages, ${s.bytes} B · written ${s.written}, skipped ${s.skippedWrites}, evicted ${s.evicted}, refused once ${s.refusedWrites} · origin usage ${(await estimate(page)).usage} B`);
      }
      expect(answers.every((a) => a.length > 0)).toBe(true);
      const s = await settled(page);
      expect(s.refusedWrites).toBeGreaterThan(0); // the store said no (QuotaExceededError), at least once
      expect(s.evicted).toBeGreaterThan(0);
      const left = new Set((await entries(page)).map((e) => e.key));
      expect([...firstKeys].some((k) => !left.has(k))).toBe(true); // the oldest went
      expect(s.bytes).toBeLessThanOrEqual(quotaSize - usage + s0.bytes);

      // the first picture again: its evicted pages are recomputed, the answer is the same
      expect(await ask(page, 0)).toBe(first);
      expect((await settled(page)).verifyFailures).toBe(0);
      expect(await worker.evaluate(() => (self as unknown as { __problems: string[] }).__problems)).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
