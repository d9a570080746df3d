import { expect, test, type Page } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import type { EngineStats } from '../src/scheduler/metrics.ts';
import { sureShapesItem } from '../test/shapes-items.ts';

// <fastcache-chat> in a page that is not ours (examples/embed.html): its
// attributes (model, press, ratio, system-prompt), its events (token, done,
// error, loaded), ask() and the library build.

/** What examples/embed.html records of the element's events (window.embedEvents). */
interface Embed {
  counts: Record<'token' | 'done' | 'error' | 'loaded', number>;
  last: { done: { text: string; usage: { completion_tokens: number } }; error: { message: string } };
}
const events = (page: Page) => page.evaluate(() => (window as unknown as { embedEvents: Embed }).embedEvents);
const chat = (page: Page) => page.locator('fastcache-chat');

async function openEmbed(page: Page, query: string): Promise<void> {
  await page.goto(`/examples/embed.html?${query}`);
  await expect(chat(page)).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
}

test('the component in a foreign page: attributes, events, ask(), typing', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await openEmbed(page, 'model=/models/stories260K');
  await expect(chat(page)).toHaveAttribute('data-model', '/models/stories260K');
  expect((await events(page)).counts.loaded).toBe(1);
  // the host page's styles stay outside the shadow root (its .fc-app rule asks for Courier)
  expect(await page.evaluate(() => getComputedStyle(document.querySelector('fastcache-chat')!.shadowRoot!.querySelector('.fc-app')!).fontFamily)).not.toContain('Courier');
  expect(await page.locator('.fc-app').count()).toBe(1); // Playwright's CSS pierces open shadow roots: the one inside

  // ask() streams token events and resolves with the text the done event carries
  const text = await page.evaluate(() => document.querySelector('fastcache-chat')!.ask('Once upon a time'));
  let ev = await events(page);
  expect(text.length).toBeGreaterThan(0);
  expect(ev.counts.token).toBeGreaterThan(1);
  expect(ev.counts.done).toBe(1);
  expect(ev.last.done.text).toBe(text);
  expect(ev.last.done.usage.completion_tokens).toBeGreaterThan(0);
  await expect(page.locator('fastcache-chat .fc-assistant .fc-answer')).toHaveText(text);

  // typing into the shadow DOM works like the page
  await page.fill('fastcache-chat #prompt', 'The dog');
  await page.click('fastcache-chat #ask');
  await expect(chat(page)).toHaveAttribute('data-state', 'done', { timeout: 60_000 });
  expect((await events(page)).counts.done).toBe(2);

  // press / ratio / system-prompt: the next question is compressed (the engine counts it)
  const before = await page.evaluate(() => document.querySelector('fastcache-chat')!.stats()) as EngineStats;
  await page.evaluate(() => {
    const el = document.querySelector('fastcache-chat')!;
    el.setAttribute('press', 'knorm');
    el.setAttribute('ratio', '0.5');
    el.setAttribute('system-prompt', 'Lily and Tom went to the park. They played on the swings and ate ice cream. Then it began to rain, so they ran home.');
  });
  expect(await page.evaluate(() => (document.querySelector('fastcache-chat')!.shadowRoot!.querySelector('#press') as HTMLSelectElement).value)).toBe('knorm');
  await page.evaluate(() => document.querySelector('fastcache-chat')!.ask('Once upon a time'));
  const after = await page.evaluate(() => document.querySelector('fastcache-chat')!.stats()) as EngineStats;
  console.log(`compression: ${before.compression.requests} → ${after.compression.requests} requests, ${after.compression.evictedTokens} tokens evicted`);
  expect(after.compression.requests).toBe(before.compression.requests + 1);
  expect(after.compression.evictedTokens).toBeGreaterThan(0);

  // an error: the error event carries the plain message; ask() rejects; the chat goes on
  const rejected = await page.evaluate(() => document.querySelector('fastcache-chat')!.ask('What is this?', new File([], 'empty.png', { type: 'image/png' })).then(() => '', (e: Error) => e.message));
  ev = await events(page);
  expect(ev.counts.error).toBe(1);
  expect(ev.last.error.message).toContain('"empty.png" is empty (0 bytes)');
  expect(rejected).toBe(ev.last.error.message);
  await expect(page.locator('fastcache-chat #error')).toContainText('empty (0 bytes)');
  await expect(chat(page)).toHaveAttribute('data-state', 'error');
  await page.evaluate(() => document.querySelector('fastcache-chat')!.ask('Once upon a time'));
  await expect(chat(page)).toHaveAttribute('data-state', 'done');

  // changing the model attribute loads that model
  await page.click('#use-shapes');
  await expect(chat(page)).toHaveAttribute('data-model', '/models/tiny-vlm-shapes', { timeout: 120_000 });
  await expect(chat(page)).toHaveAttribute('data-state', 'ready');
  expect((await events(page)).counts.loaded).toBe(2);
  await page.screenshot({ path: 'test-results/e2e/component-in-foreign-page.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('the component answers about an image given to ask(text, image)', async ({ page }) => {
  await openEmbed(page, 'model=/models/tiny-vlm-shapes');
  await expect(chat(page)).toHaveAttribute('data-vision', 'true');
  // as in chat.spec.ts: the item the PyTorch reference answers right by the widest margin must get the same answer
  const { item, sure } = sureShapesItem();
  const text = await page.evaluate(async (item) => {
    const png = await (await fetch(`/models/tiny-vlm-shapes/testset/${item.image}`)).blob();
    return document.querySelector('fastcache-chat')!.ask(item.question, png);
  }, item);
  console.log(`component: "${item.question}" → "${text.trim()}" (expected "${item.answer}")`);
  expect(text.trim().length).toBeGreaterThan(0);
  if (sure) expect(text.trim()).toBe(item.answer);
  await expect(page.locator('fastcache-chat .fc-user img.fc-thumb')).toHaveCount(1);
  const ev = await events(page);
  expect(ev.counts.done).toBe(1);
  expect(ev.last.done.text).toBe(text);
});

test('the library build (vite.lib.config.ts) defines the element and runs its Worker from its own folder', async ({ page }) => {
  const t0 = Date.now();
  const build = spawnSync('npx', ['vite', 'build', '-c', 'vite.lib.config.ts', '--outDir', 'test-results/dist-lib', '--logLevel', 'warn'], { encoding: 'utf8' });
  expect(build.status, build.stderr).toBe(0);
  console.log(`library build: ${Date.now() - t0} ms`);
  await openEmbed(page, 'model=/models/stories260K&lib=/test-results/dist-lib/fastcache-chat.js');
  const text = await page.evaluate(() => document.querySelector('fastcache-chat')!.ask('Once upon a time'));
  expect(text.length).toBeGreaterThan(0);
  expect((await events(page)).counts.done).toBe(1);
});
