import { expect, test, type Page, type Worker } from '@playwright/test';
import { askAndWait } from './chat-page.ts';
import type { WorkerEngineStats } from '../src/worker/client.ts';

// What the page does when the ground gives way under the engine: the GPU
// device is lost mid-answer (the Worker's test hook destroys it, as a driver
// reset would), and the engine's Worker dies (it closes itself, as a crash
// ends it). Both times the page says what happened, and the next question is
// answered — the same answer, token for token, as before.

const QUESTION = 'Once upon a time';
const stats = (page: Page) => page.evaluate(() => window.fastcache!.engine.stats()) as Promise<WorkerEngineStats>;

/** A new chat each time (the page's default temperature is 0): the same question gives the same answer. */
async function askFresh(page: Page, question: string): Promise<string> {
  await page.click('#new-chat');
  return askAndWait(page, question);
}

async function ready(page: Page): Promise<void> {
  await page.goto('/?worker=dedicated&persist=off&model=/models/stories260K');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
}

async function engineWorker(page: Page): Promise<Worker> {
  await expect.poll(() => page.workers().length).toBeGreaterThan(0);
  return page.workers().at(-1)!;
}

test('a lost GPU device mid-answer: the answer ends with a message, the next one is the same as before', async ({ page }) => {
  test.setTimeout(180_000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await ready(page);
  const before = await askFresh(page, QUESTION);
  expect(before.length).toBeGreaterThan(20);

  const worker = await engineWorker(page);
  await page.click('#new-chat');
  await page.fill('#prompt', QUESTION);
  await page.click('#ask');
  await expect(page.locator('.fc-assistant').last().locator('.fc-answer')).not.toHaveText('', { timeout: 60_000 }); // streaming
  expect(await worker.evaluate(() => (self as unknown as { fastcache: { loseDevice(): boolean } }).fastcache.loseDevice())).toBe(true);
  await expect(page.locator('#error')).toContainText(/GPU device was lost/, { timeout: 60_000 });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'error');
  const shown = await page.locator('#error .fc-error-text').textContent();

  const t0 = Date.now();
  const after = await askFresh(page, QUESTION);
  const s = await stats(page);
  console.log(`device lost mid-answer → "${shown}"; next answer after ${Date.now() - t0} ms (rebuild ${s.device?.lastRebuildMs?.toFixed(0)} ms), equal: ${after === before}`);
  expect(after).toBe(before);
  expect(s.device).toMatchObject({ losses: 1, recoveries: 1, stoppedRequests: 1 });
  expect(s.pool.pagesInUse).toBe(0);
  expect(errors).toEqual([]);
});

test('a crashed engine Worker: the page says so, starts a new one, and answers the same', async ({ page }) => {
  test.setTimeout(180_000);
  await ready(page);
  const before = await askFresh(page, QUESTION);
  const worker = await engineWorker(page);
  const t0 = Date.now();
  await worker.evaluate(() => self.close()).catch(() => {}); // the Worker ends itself; evaluate may not come back
  await expect(page.locator('#error')).toContainText(/Worker stopped .*a new one was started/, { timeout: 30_000 });
  const shown = await page.locator('#error .fc-error-text').textContent();
  const after = await askFresh(page, QUESTION);
  const s = await stats(page);
  console.log(`worker closed → "${shown}"; answered again after ${Date.now() - t0} ms, restarts ${s.workerRestarts}, equal: ${after === before}`);
  expect(after).toBe(before);
  expect(s.workerRestarts).toBe(1);
});
