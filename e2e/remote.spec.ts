import { expect, test, type Page } from '@playwright/test';
import { freePort, startServe, type ServeProcess } from './serve-process.ts';
import type { EngineStats } from '../src/api/stats.ts';
import { sureShapesItem } from '../test/shapes-items.ts';
import { askAndWait } from './chat-page.ts';

// The chat page on a remote backend: this project's own OpenAI-compatible
// server (`npm run serve`, the shapes VLM on Node's WebGPU), started here,
// with CORS open to the page's origin. The same flow as chat.spec.ts's first
// test — upload an image, ask, the answer streams — with the page set to the
// server by the URL form (?remote=…&model=…); then the picker's remote form
// with an API key that must stay out of storage and the URL, and a server
// that is not there.

const MODEL = 'public/models/tiny-vlm-shapes';
const PAGE_ORIGIN = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 5179)}`;

const { item, imagePath, sure } = sureShapesItem();

test.describe.configure({ mode: 'serial' });
let server: ServeProcess | undefined;
let base: string; // http://127.0.0.1:<port>/v1
let modelId: string;
let page: Page;
const pageErrors: string[] = [];

const serverStats = async () => (await (await fetch(`${base}/stats`)).json()) as EngineStats;

test.beforeAll(async ({ browser }) => {
  test.setTimeout(240_000);
  server = await startServe(MODEL, PAGE_ORIGIN);
  base = server.base;
  modelId = ((await (await fetch(`${base}/models`)).json()) as { data: { id: string }[] }).data[0].id;
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

test.afterAll(async () => {
  await page?.close();
  await server?.stop();
  expect(pageErrors).toEqual([]);
});


test('?remote=…&model=…: ask about an uploaded image, the answer streams from the server; asking again reuses its image features', async () => {
  await page.goto(`/?remote=${encodeURIComponent(base)}&model=${encodeURIComponent(modelId)}`);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 60_000 });
  await expect(page.locator('body')).toHaveAttribute('data-remote', base);
  await expect(page.locator('body')).toHaveAttribute('data-model', modelId);
  await expect(page.locator('#status')).toContainText(`on the server at ${base}`);
  await expect(page.locator('#remote-url')).toHaveValue(base);

  await page.setInputFiles('#file', imagePath);
  await expect(page.locator('#preview')).toContainText(`${item.image} · 128 × 128`);
  await page.fill('#prompt', item.question);
  await page.click('#ask');
  await expect(page.locator('body')).toHaveAttribute('data-state', /generating|done/);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  await page.screenshot({ path: 'test-results/e2e/remote-after-answer.png' });
  await expect(page.locator('.fc-user img.fc-thumb')).toHaveCount(1);
  const first = (await page.locator('.fc-assistant .fc-answer').first().textContent())!.trim();
  console.log(`remote, item ${item.index}: "${item.question}" → "${first}" (expected "${item.answer}")`);
  expect(first.length).toBeGreaterThan(0);
  if (sure) expect(first).toBe(item.answer);
  const s1 = await serverStats();
  expect(s1.vision.encoderCalls).toBeGreaterThan(0);
  expect(s1.requestsFinished).toBeGreaterThan(0);

  // a follow-up in the same conversation resends the image: the server's feature cache serves it
  const second = await askAndWait(page, 'How many objects are there?');
  const s2 = await serverStats();
  console.log(`remote follow-up → "${second.trim()}"; server encoder calls ${s1.vision.encoderCalls} → ${s2.vision.encoderCalls}, feature-cache hits ${s1.vision.featureCacheHits} → ${s2.vision.featureCacheHits}`);
  expect(s2.vision.encoderCalls).toBe(s1.vision.encoderCalls);
  expect(s2.vision.featureCacheHits).toBeGreaterThan(s1.vision.featureCacheHits);
  await expect(page.locator('[data-metric=encoder-calls]')).toHaveText(String(s2.vision.encoderCalls)); // the panel reads the server's stats
  expect(s2.pool.pagesInUse).toBe(0);
});

test('the picker’s remote form: URL + model + API key; the key is sent, and kept out of storage and the URL', async () => {
  await page.goto('/?model=/models/stories260K'); // a local model first (the page's own engine)
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('body')).not.toHaveAttribute('data-remote', /./);
  // Listening only from here: the previous test's document (remote, no key)
  // may still have had a stats poll in flight while this one navigated.
  const auth: string[] = [];
  page.on('request', (r) => {
    if (r.url().startsWith(base)) auth.push(r.headers().authorization ?? '');
  });

  await page.click('#remote-picker summary');
  await page.fill('#remote-url', base);
  await page.fill('#remote-model', ''); // empty: the server's first model
  await page.fill('#remote-key', 'sk-e2e-secret');
  await page.click('#remote-connect');
  await expect(page.locator('body')).toHaveAttribute('data-remote', base, { timeout: 60_000 });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready');
  await expect(page.locator('body')).toHaveAttribute('data-model', modelId);

  await page.setInputFiles('#file', imagePath);
  const answer = await askAndWait(page, item.question);
  if (sure) expect(answer.trim()).toBe(item.answer);
  expect(auth.length).toBeGreaterThan(0);
  expect(auth.every((a) => a === 'Bearer sk-e2e-secret')).toBe(true);
  const stored = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, url: location.href, cookie: document.cookie }));
  expect(stored).not.toContain('sk-e2e-secret');
});

test('a server that is not there: a plain message, and the chat can connect again', async () => {
  const gone = `http://127.0.0.1:${await freePort()}/v1`;
  await page.fill('#remote-url', gone);
  await page.click('#remote-connect');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'error', { timeout: 30_000 });
  await expect(page.locator('#error')).toContainText(`Could not connect to the first model at ${gone}`);
  await expect(page.locator('#error')).toContainText('Could not reach the server');

  await page.fill('#remote-url', base);
  await page.click('#remote-connect');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 60_000 });
  await expect(page.locator('#error')).toBeHidden();
});
