import { expect, test, type Page } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import { serveStatic } from './static-server.ts';
import { startServe, type ServeProcess } from './serve-process.ts';

// The package as a user installs it: `npm run build:lib` (ESM + .d.ts under
// package.json "exports"), then a page outside src/ (examples/consumer) that
// imports only the built files, served by a plain static server, type-checked
// against the built declarations.

test.describe.configure({ mode: 'serial' });
let server: Awaited<ReturnType<typeof serveStatic>>;
let remote: ServeProcess | undefined;
let inPageAnswer = '';
test.beforeAll(async () => {
  test.setTimeout(240_000);
  const build = spawnSync('npm', ['run', 'build:lib', '--silent'], { encoding: 'utf8' });
  expect(build.status, build.stderr + build.stdout).toBe(0);
  server = await serveStatic();
});
test.afterAll(async () => {
  await remote?.stop();
  await server?.close();
});

async function askOnce(page: Page, question: string): Promise<string> {
  await page.fill('#question', question);
  await page.click('#ask button');
  await expect(page.locator('#state')).toHaveText('done', { timeout: 120_000 });
  return (await page.locator('#answer').textContent()) ?? '';
}

test('package.json exports resolve to the built files, and the consumer type-checks against dist-lib/types', () => {
  const check = spawnSync('npx', ['tsc', '-p', 'examples/consumer'], { encoding: 'utf8' });
  expect(check.status, check.stdout + check.stderr).toBe(0);
});

test('a page that imports only the built package chats with the in-page (Worker) engine', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const fromSources: string[] = [];
  page.on('request', (r) => r.url().includes('/src/') && fromSources.push(r.url()));
  await page.goto(`${server.url}/examples/consumer/index.html?model=/models/stories260K`);
  await expect(page.locator('#state')).toHaveText('ready', { timeout: 120_000 });
  await expect(page.locator('#model')).toHaveText('/models/stories260K');
  inPageAnswer = await askOnce(page, 'Once upon a time');
  expect(inPageAnswer.length).toBeGreaterThan(10);
  expect(fromSources).toEqual([]); // nothing of src/ was fetched: only dist-lib and the model
  expect(errors).toEqual([]);
});

test('the same page chats with a remote server (npm run serve) through the same interface: the same greedy answer', async ({ page }) => {
  test.setTimeout(240_000);
  remote = await startServe('public/models/stories260K', server.url);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/examples/consumer/index.html?remote=${encodeURIComponent(remote.base)}`);
  await expect(page.locator('#state')).toHaveText('ready', { timeout: 60_000 });
  await expect(page.locator('#backend')).toHaveText('remote');
  const answer = await askOnce(page, 'Once upon a time');
  expect(answer).toBe(inPageAnswer);
  expect(errors).toEqual([]);
});
