import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, expect, test, type BrowserContext, type Page } from '@playwright/test';
import type { HubStats } from '../src/worker/protocol.ts';
import { sureShapesItem } from '../test/shapes-items.ts';
import { askAndWait } from './chat-page.ts';
import config from '../playwright.config.ts';

// Persistence across a browser restart: one user-data-dir, two browser
// launches. Session 1 asks the chat page about an image; its prefix pages go
// to IndexedDB; the browser is closed. Session 2 asks about the same image
// file: no vision-encoder run, the prefix from IndexedDB, the same answer;
// then another question about it: still no encoder run, not even a decode.
// Then "Clear stored caches" empties the store.

const { item, imagePath, sure } = sureShapesItem();
const baseURL = config.use!.baseURL!;
const launch = config.use!.launchOptions!;

async function session(dir: string): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await chromium.launchPersistentContext(dir, { ...launch, baseURL });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  return { context, page, errors };
}

const stats = (page: Page) => page.evaluate(() => window.fastcache!.engine.stats()) as Promise<HubStats>;

test('a stored image prefix survives a browser restart: no encoder run, same answer; the page clears it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fastcache-profile-'));
  try {
    const one = await session(dir);
    await one.page.setInputFiles('#file', imagePath);
    const first = (await askAndWait(one.page, item.question)).trim();
    if (sure) expect(first).toBe(item.answer);
    expect((await stats(one.page)).vision.encoderCalls).toBe(1);
    // the pages are written in the background: wait until the store has them
    await expect.poll(async () => (await one.page.evaluate(() => window.fastcache!.engine.cache.usage())).stored?.entries ?? 0, { timeout: 30_000 }).toBeGreaterThan(2);
    const stored1 = (await stats(one.page)).tiers!.stored!;
    expect(stored1.backend).toBe('indexeddb');
    await one.context.close();
    expect(one.errors).toEqual([]);

    const two = await session(dir);
    const before = (await stats(two.page)).tiers!.stored!;
    expect(before.entries).toBe(stored1.entries); // what session 1 wrote, read back at open
    await two.page.setInputFiles('#file', imagePath);
    const second = (await askAndWait(two.page, item.question)).trim();
    const s = await stats(two.page);
    console.log(`session 1: "${first}", ${stored1.entries} pages stored; session 2: "${second}", encoder runs ${s.vision.encoderCalls}, ${s.tiers!.stored!.restoredTokens} tokens restored, ${s.tiers!.cpu.promotedPages} pages promoted`);
    expect(second).toBe(first);
    expect(s.vision.encoderCalls).toBe(0);
    expect(s.tiers!.stored!.restoredTokens).toBeGreaterThan(0);
    expect(s.tiers!.stored!.verifyFailures).toBe(0);
    expect(s.tiers!.cpu.promotedPages * 16).toBe(s.tiers!.stored!.restoredTokens); // staged in the CPU tier, promoted into the pool
    await expect(two.page.locator('[data-metric=stored]')).toContainText('tokens restored');
    await expect(two.page.locator('[data-metric=prefix-source]')).toContainText(`· ${s.tiers!.stored!.restoredTokens} stored`);

    // another question about the same picture, in a new chat: the picture's KV is reused whole — its
    // last, partly filled page (the prefix tail) comes from the store too — so it is neither encoded nor decoded
    const other = item.question === 'How many shapes are there?' ? 'What colour is the largest shape?' : 'How many shapes are there?';
    await two.page.click('#new-chat');
    await two.page.setInputFiles('#file', imagePath);
    expect((await askAndWait(two.page, other)).trim().length).toBeGreaterThan(0);
    const s2 = await stats(two.page);
    expect(s2.vision.encoderCalls).toBe(0);
    expect(s2.vision.imagesDecoded).toBe(0);
    expect(s2.tiers!.stored!.verifyFailures).toBe(0);

    await two.page.click('#clear-stored');
    await expect.poll(async () => (await two.page.evaluate(() => window.fastcache!.engine.cache.list())).length).toBe(0);
    await expect(two.page.locator('[data-metric=stored]')).toContainText('0 pages');
    await two.context.close();
    expect(two.errors).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
