import { expect, test, type BrowserContext, type Page } from '@playwright/test';
import type { HubStats } from '../src/worker/protocol.ts';
import { sureShapesItem } from '../test/shapes-items.ts';

// Two tabs storing the same entry at once: two pages of one browser context,
// each with its own engine (?worker=dedicated, so two PersistentTiers on the
// origin's one IndexedDB), ask about the same picture at the same moment and
// both write its prefix pages. A third tab, opened afterwards, finds one
// valid entry per page — nothing broken or orphaned to collect — and answers
// from them: no vision-encoder run, the same answer.

const { item, imagePath, sure } = sureShapesItem();
const stats = (page: Page) => page.evaluate(() => window.fastcache!.engine.stats()) as Promise<HubStats>;
const stored = async (page: Page) => (await stats(page)).tiers!.stored!;

async function openTab(context: BrowserContext, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/?worker=dedicated');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  return page;
}

async function startAsking(page: Page): Promise<void> {
  await page.setInputFiles('#file', imagePath);
  await page.fill('#prompt', item.question);
}

async function answer(page: Page): Promise<string> {
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  return ((await page.locator('.fc-assistant .fc-answer').last().textContent()) ?? '').trim();
}

/** Waits until the tab's stored tier has settled what it was given (its written count stops moving). */
async function written(page: Page): Promise<number> {
  let last = -1;
  await expect.poll(async () => {
    const now = (await stored(page)).written;
    const same = now === last && now > 0;
    last = now;
    return same;
  }, { timeout: 30_000, intervals: [500] }).toBe(true);
  return last;
}

test('two tabs storing the same entry at once leave one valid entry per page', async ({ context }) => {
  const errors: string[] = [];
  const [a, b] = [await openTab(context, errors), await openTab(context, errors)];
  await Promise.all([startAsking(a), startAsking(b)]);
  await Promise.all([a.click('#ask'), b.click('#ask')]);
  const [ansA, ansB] = await Promise.all([answer(a), answer(b)]);
  expect(ansB).toBe(ansA);
  if (sure) expect(ansA).toBe(item.answer);
  const [wa, wb] = await Promise.all([written(a), written(b)]);
  expect((await stats(a)).vision.encoderCalls).toBe(1); // each tab computed the picture itself
  expect((await stats(b)).vision.encoderCalls).toBe(1);
  console.log(`tab A wrote ${wa} pages, tab B ${wb}`);

  const c = await openTab(context, errors);
  const atOpen = await stored(c);
  expect(atOpen.entries).toBe(Math.max(wa, wb)); // the same pages, once each
  expect(atOpen.collected).toBe(0); // no orphaned data, no broken manifest
  await startAsking(c);
  await c.click('#ask');
  expect(await answer(c)).toBe(ansA);
  const s = await stats(c);
  expect(s.vision.encoderCalls).toBe(0);
  expect(s.tiers!.stored!.restoredTokens).toBeGreaterThan(0);
  expect(s.tiers!.stored!.verifyFailures).toBe(0);
  expect(errors).toEqual([]);
});
