import { expect, test, type BrowserContext, type Page } from '@playwright/test';
import type { HubStats } from '../src/worker/protocol.ts';
import { sureShapesItem } from '../test/shapes-items.ts';
import { askAndWait } from './chat-page.ts';

// One engine for every tab: two pages of ONE browser context open the chat
// page on the default model (tiny-vlm-shapes), and both connect to the
// origin's SharedWorker. The model loads once; tab 2's question about tab
// 1's image hits tab 1's KV pages (no vision-encoder run); both tabs stream
// at once; a tab closed (or reloaded) mid-answer has its request aborted and
// its pages freed while tab 2's answer completes. Without SharedWorker (and
// with ?worker=dedicated) the page runs its own dedicated Worker and chats
// as before. The tests share the context (serial), so the model loads once.


const { item, imagePath, sure } = sureShapesItem();

/** The shared engine's counters, through the page's WorkerEngine (with the hub's clients, engineLoads and worker). */
const hubStats = (page: Page) => page.evaluate(() => window.fastcache!.engine.stats()) as Promise<HubStats>;

const pageErrors: string[] = [];

async function openTab(context: BrowserContext, path = '/'): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(path);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('body')).toHaveAttribute('data-vision', 'true');
  return page;
}


/** What a page records of a stream it runs through its engine: chunk arrival times (ms since the epoch), text, end. */
interface StreamRecord { times: number[]; text: string; finish: string | null; completionTokens: number; error: string | null; done: boolean }

/**
 * Starts a long greedy stream in `page` through its engine (window.fastcache.engine),
 * EOS ignored so that it runs `maxTokens` tokens: the UI's answers from this model are a few words.
 */
async function startStream(page: Page, id: string, maxTokens: number): Promise<void> {
  await page.evaluate(({ id, maxTokens }) => {
    const w = window as unknown as { streams?: Record<string, StreamRecord> };
    const rec: StreamRecord = { times: [], text: '', finish: null, completionTokens: 0, error: null, done: false };
    (w.streams ??= {})[id] = rec;
    void (async () => {
      try {
        const messages = [{ role: 'user' as const, content: 'Tell me about the shapes.' }];
        for await (const c of await window.fastcache!.engine.chat.completions.create({ messages, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, request_id: id })) {
          rec.times.push(performance.timeOrigin + performance.now());
          rec.text += c.choices[0].delta.content ?? '';
          rec.finish = c.choices[0].finish_reason ?? rec.finish;
          if (c.usage) rec.completionTokens = c.usage.completion_tokens;
        }
      } catch (e) {
        rec.error = String(e);
      }
      rec.done = true;
    })();
  }, { id, maxTokens });
}

const streamOf = (page: Page, id: string) => page.evaluate((id) => (window as unknown as { streams: Record<string, StreamRecord> }).streams[id], id);
const chunksOf = async (page: Page, id: string) => (await streamOf(page, id)).times.length;

test.describe('two tabs, one shared engine', () => {
  test.describe.configure({ mode: 'serial' });
  let context: BrowserContext;
  let tab1: Page;
  let tab2: Page;

  test.beforeAll(async ({ browser }) => {
    context = await browser.newContext();
  });

  test.afterAll(async () => {
    await context.close();
    expect(pageErrors).toEqual([]);
  });

  test('the model is loaded once for two tabs; the metrics panel shows the tabs', async () => {
    tab1 = await openTab(context);
    tab2 = await openTab(context);
    const s = await hubStats(tab2);
    console.log(`shared engine: ${s.engineLoads} load(s), ${s.clients} tabs, worker ${s.worker}`);
    expect(s).toMatchObject({ worker: 'shared', engineLoads: 1, clients: 2 });
    expect(await tab1.evaluate(() => [window.fastcache!.engine.kind, window.fastcache!.engine.fallbackReason])).toEqual(['shared', null]);
    await expect(tab2.locator('[data-metric=tabs]')).toHaveText('2');
    await expect(tab1.locator('[data-metric=tabs]')).toHaveText('2', { timeout: 10_000 }); // tab 1 hears of tab 2 on its next poll
  });

  test('tab 2’s question about tab 1’s image is a prefix-cache hit: no vision-encoder run', async () => {
    await tab1.setInputFiles('#file', imagePath);
    const first = (await askAndWait(tab1, item.question)).trim();
    const s1 = await hubStats(tab1);
    expect(s1.vision.encoderCalls).toBeGreaterThan(0);
    if (sure) expect(first).toBe(item.answer);

    await tab2.setInputFiles('#file', imagePath);
    const second = (await askAndWait(tab2, item.question)).trim();
    const s2 = await hubStats(tab2);
    console.log(`tab 1: "${first}", tab 2: "${second}"; encoder runs ${s1.vision.encoderCalls} → ${s2.vision.encoderCalls}, prefix-cache hit tokens ${s1.prefixCache.hitTokens} → ${s2.prefixCache.hitTokens}`);
    expect(second).toBe(first);
    expect(s2.vision.encoderCalls).toBe(s1.vision.encoderCalls);
    expect(s2.vision.imagesDecoded).toBe(s1.vision.imagesDecoded);
    expect(s2.prefixCache.hitRequests).toBe(s1.prefixCache.hitRequests + 1);
    expect(s2.prefixCache.hitTokens).toBeGreaterThan(s1.prefixCache.hitTokens);
    await expect(tab2.locator('[data-metric=encoder-calls]')).toHaveText(String(s1.vision.encoderCalls));
    expect(s2.engineLoads).toBe(1);
  });

  test('both tabs stream at the same time', async () => {
    await startStream(tab1, 'both-1', 80);
    await startStream(tab2, 'both-2', 80);
    await expect.poll(async () => (await streamOf(tab1, 'both-1')).done && (await streamOf(tab2, 'both-2')).done, { timeout: 120_000 }).toBe(true);
    const [a, b] = [await streamOf(tab1, 'both-1'), await streamOf(tab2, 'both-2')];
    for (const r of [a, b]) expect([r.error, r.finish, r.completionTokens]).toEqual([null, 'length', 80]);
    const within = (times: number[], r: StreamRecord) => times.filter((t) => t > r.times[0] && t < r.times.at(-1)!).length;
    console.log(`tab 1 streamed ${a.times.length} chunks over ${(a.times.at(-1)! - a.times[0]).toFixed(0)} ms, tab 2 ${b.times.length} over ${(b.times.at(-1)! - b.times[0]).toFixed(0)} ms; ${within(a.times, b)} of tab 1's arrived while tab 2 streamed`);
    expect(within(a.times, b)).toBeGreaterThan(20);
    expect(within(b.times, a)).toBeGreaterThan(20);
    expect(a.text).toBe(b.text); // the same request, batched together: the same greedy tokens
  });

  test('closing tab 1 mid-answer: tab 2’s answer completes; the closed tab’s request is aborted, every page is free and clients drops', async () => {
    const before = await hubStats(tab2);
    await startStream(tab1, 'long', 400);
    await expect.poll(() => chunksOf(tab1, 'long'), { timeout: 60_000 }).toBeGreaterThan(5);
    await startStream(tab2, 'answer', 60);
    await expect.poll(() => chunksOf(tab2, 'answer'), { timeout: 60_000 }).toBeGreaterThan(5);
    const mid = await hubStats(tab2);
    expect(mid.requestsRunning).toBe(2);
    expect(mid.pool.pagesInUse).toBeGreaterThan(0);
    await tab1.close(); // mid-answer: it had streamed a few of its 400 tokens

    await expect.poll(async () => (await streamOf(tab2, 'answer')).done, { timeout: 120_000 }).toBe(true);
    const answer = await streamOf(tab2, 'answer');
    expect([answer.error, answer.finish, answer.completionTokens]).toEqual([null, 'length', 60]);
    const alone = await tab2.evaluate(async () => (await window.fastcache!.engine.chat.completions.create({ messages: [{ role: 'user', content: 'Tell me about the shapes.' }], max_tokens: 60, temperature: 0, ignore_eos: true })).choices[0].message.content);
    expect(answer.text).toBe(alone); // undisturbed: the tokens it gets alone

    await expect.poll(async () => (await hubStats(tab2)).clients, { timeout: 30_000 }).toBe(1);
    const after = await hubStats(tab2);
    console.log(`tab 1 closed mid-answer: aborted ${before.requestsAborted} → ${after.requestsAborted}, pages in use ${mid.pool.pagesInUse} → ${after.pool.pagesInUse}, clients ${mid.clients} → ${after.clients}`);
    expect(after).toMatchObject({ requestsRunning: 0, requestsWaiting: 0, requestsAborted: before.requestsAborted + 1, engineLoads: 1 });
    expect(after.pool.pagesInUse).toBe(0);
    await expect(tab2.locator('[data-metric=tabs]')).toHaveText('1', { timeout: 10_000 });

    // a tab reloaded mid-answer: the same; its new page joins the loaded engine
    const tab3 = await openTab(context);
    expect((await hubStats(tab2)).clients).toBe(2);
    await startStream(tab3, 'reloaded', 400);
    await expect.poll(() => chunksOf(tab3, 'reloaded'), { timeout: 60_000 }).toBeGreaterThan(5);
    await tab3.reload();
    await expect(tab3.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
    await expect.poll(async () => (await hubStats(tab2)).requestsAborted, { timeout: 30_000 }).toBe(before.requestsAborted + 2);
    await expect.poll(async () => (await hubStats(tab2)).clients, { timeout: 30_000 }).toBe(2);
    const reloaded = await hubStats(tab3);
    expect(reloaded).toMatchObject({ requestsRunning: 0, engineLoads: 1, clients: 2 });
    expect(reloaded.pool.pagesInUse).toBe(0);
  });
});

for (const [what, path, setup] of [
  ['without SharedWorker the page falls back to a dedicated Worker', '/', (c: BrowserContext) => c.addInitScript(() => { delete (window as { SharedWorker?: unknown }).SharedWorker; })],
  ['?worker=dedicated asks for a dedicated Worker', '/?worker=dedicated', async () => {}],
] as const) {
  test(`${what}, and the chat works the same: upload, ask, the answer streams`, async ({ browser }) => {
    const context = await browser.newContext();
    await setup(context);
    const page = await openTab(context, path);
    expect(await page.evaluate(() => window.fastcache!.engine.kind)).toBe('dedicated');
    const reason = await page.evaluate(() => window.fastcache!.engine.fallbackReason);
    if (path === '/') expect(reason).toMatch(/no SharedWorker/);
    else expect(reason).toBeNull();
    expect(await hubStats(page)).toMatchObject({ worker: 'dedicated', clients: 1, engineLoads: 1 });

    await page.setInputFiles('#file', imagePath);
    await page.fill('#prompt', item.question);
    await page.click('#ask');
    await expect(page.locator('body')).toHaveAttribute('data-state', /generating|done/);
    await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
    const answer = (await page.locator('.fc-assistant .fc-answer').first().textContent())!.trim();
    console.log(`${what}: "${item.question}" → "${answer}"`);
    expect(answer.length).toBeGreaterThan(0);
    if (sure) expect(answer).toBe(item.answer);
    expect((await hubStats(page)).vision.encoderCalls).toBeGreaterThan(0);
    await context.close();
    expect(pageErrors).toEqual([]);
  });
}
