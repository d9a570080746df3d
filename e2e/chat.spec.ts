import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import type { EngineStats } from '../src/scheduler/metrics.ts';
import { sureShapesItem } from '../test/shapes-items.ts';
import { askAndWait } from './chat-page.ts';

// Chat about an image on the page, with the bundled shapes VLM: upload,
// ask, stream; a second question about the same image must not run the
// vision encoder again; invalid files give a plain message and the chat
// goes on. The tests share one page (serial), so the model loads and the
// vision encoder warms up once.


const { item, imagePath, sure } = sureShapesItem();
// a picture as a person draws one (white ground, not 128 px, from the split the model never trained on),
// asked what a person asks first: what shape or colour an object is
const drawn = sureShapesItem(undefined, 'ood', (it) => it.background?.every((c) => c === 255) === true && it.width !== 128 && ['shape', 'colour'].includes(it.type));

const stats = () => page.evaluate(() => window.fastcache!.stats()) as Promise<EngineStats>;

test.describe.configure({ mode: 'serial' });
let page: Page;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }) => {
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto('/?model=/models/tiny-vlm-shapes');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('body')).toHaveAttribute('data-vision', 'true');
});

test.afterAll(async () => {
  await page.close();
  expect(pageErrors).toEqual([]);
});


test('ask about an uploaded image: the answer streams in; asking again does not re-encode the image', async () => {
  await page.setInputFiles('#file', imagePath);
  await expect(page.locator('#preview')).toBeVisible();
  await expect(page.locator('#preview')).toContainText(`${item.image} · 128 × 128`);

  await page.fill('#prompt', item.question);
  await page.click('#ask');
  await expect(page.locator('body')).toHaveAttribute('data-state', /generating|done/);
  await page.screenshot({ path: 'test-results/e2e/chat-during-answer.png' });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  await expect(page.locator('.fc-user img.fc-thumb')).toHaveCount(1);
  const first = (await page.locator('.fc-assistant .fc-answer').first().textContent())!.trim();
  console.log(`item ${item.index}: "${item.question}" → "${first}" (expected "${item.answer}"${sure ? '' : ', no item the reference gets right: answer not checked'})`);
  expect(first.length).toBeGreaterThan(0);
  if (sure) expect(first).toBe(item.answer);
  const s1 = await stats();
  expect(s1.vision.encoderCalls).toBeGreaterThan(0);

  // a follow-up in the same conversation: the image's KV (and features) are reused
  const second = await askAndWait(page, 'How many objects are there?');
  const s2 = await stats();
  console.log(`follow-up → "${second.trim()}"; encoder calls ${s1.vision.encoderCalls} → ${s2.vision.encoderCalls}, prefix-cache hit tokens ${s1.prefixCache.hitTokens} → ${s2.prefixCache.hitTokens}`);
  expect(s2.vision.encoderCalls).toBe(s1.vision.encoderCalls);
  await expect(page.locator('[data-metric=encoder-calls]')).toHaveText(String(s2.vision.encoderCalls));
  await page.screenshot({ path: 'test-results/e2e/chat-after-answer.png' });

  // a new chat about the same image (the same bytes, picked again): still no encoder run
  await page.click('#new-chat');
  await page.setInputFiles('#file', imagePath);
  const again = (await askAndWait(page, item.question)).trim();
  const s3 = await stats();
  expect(s3.vision.encoderCalls).toBe(s1.vision.encoderCalls);
  if (sure) expect(again).toBe(first);
});

test('a white-background picture drawn by another renderer, at its own size, gets the right answer', async () => {
  // the shipped model's PyTorch reference answers it right with a clear lead: the page must too
  expect(drawn.sure).toBe(true);
  await page.click('#new-chat');
  await page.setInputFiles('#file', drawn.imagePath);
  await expect(page.locator('#preview')).toContainText(`${drawn.item.image} · ${drawn.item.width} × ${drawn.item.height}`);
  const answer = (await askAndWait(page, drawn.item.question)).trim();
  console.log(`ood item ${drawn.item.index} (${drawn.item.width} × ${drawn.item.height}, white): "${drawn.item.question}" → "${answer}" (expected "${drawn.item.answer}")`);
  expect(answer).toBe(drawn.item.answer);
});

test('settings: a press evicts part of the image tokens\' KV (region: image) and the answer still completes', async () => {
  await page.click('#new-chat');
  await page.selectOption('#press', 'snapkv');
  await page.fill('#ratio', '0.5');
  await page.selectOption('#region', 'image');
  const before = await stats();
  await page.setInputFiles('#file', imagePath);
  const answer = await askAndWait(page, item.question);
  const after = await stats();
  console.log(`snapkv 0.5 on the image tokens → "${answer.trim()}"; ${after.compression.evictedTokens - before.compression.evictedTokens} tokens evicted`);
  expect(answer.trim().length).toBeGreaterThan(0);
  expect(after.compression.requests).toBe(before.compression.requests + 1);
  expect(after.compression.evictedTokens).toBeGreaterThan(before.compression.evictedTokens);
  await page.selectOption('#press', 'none');
});

/** A valid 8000 × 5000 (40-megapixel) black RGB PNG: 120 MB of pixels, ~120 KB deflated. */
function png40mp(): Buffer {
  const [w, h] = [8000, 5000];
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc(h * (1 + 3 * w)); // filter byte 0 + black pixels, every row
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

test('invalid files give a plain message in the page, and the chat keeps working', async () => {
  await page.click('#new-chat');
  const error = page.locator('#error');

  // paste and drop attach an image too
  const bytes = [...readFileSync(imagePath)];
  for (const how of ['paste', 'drop'] as const) {
    await page.evaluate(([how, bytes]) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes as number[])], `${how}d.png`, { type: 'image/png' }));
      const target = document.querySelector('.fc-app')!;
      if (how === 'paste') document.getElementById('prompt')!.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
      else target.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, [how, bytes] as const);
    await expect(page.locator('#preview')).toContainText(`${how}d.png · 128 × 128`);
  }
  await page.locator('#preview .fc-remove').click();
  await expect(page.locator('#preview')).toBeHidden();

  await page.setInputFiles('#file', { name: 'empty.png', mimeType: 'image/png', buffer: Buffer.alloc(0) });
  await expect(error).toContainText('"empty.png" is empty (0 bytes)');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'error');
  await expect(page.locator('#preview')).toBeHidden();

  await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await expect(error).toContainText('"notes.txt" is not an image');

  const t0 = Date.now();
  const big = png40mp();
  await page.setInputFiles('#file', { name: 'huge.png', mimeType: 'image/png', buffer: big });
  await expect(error).toContainText('"huge.png" is too large: 8000 × 5000 pixels (40.0 megapixels); this page takes images up to 16.8 megapixels');
  console.log(`40 MP PNG (${(big.length / 1024).toFixed(0)} KB) made and refused in ${Date.now() - t0} ms`);
  await expect(page.locator('#preview')).toBeHidden();

  // a text file renamed .png passes the cheap checks; the engine cannot decode it and says so
  await page.setInputFiles('#file', { name: 'fake.png', mimeType: 'image/png', buffer: Buffer.from('This is a text file, not a PNG.\n') });
  await expect(page.locator('#preview')).toBeVisible();
  await page.fill('#prompt', 'What shape is the red object?');
  await page.click('#ask');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'error', { timeout: 60_000 });
  await expect(error).toContainText(/not an image/i);
  await expect(page.locator('.fc-user.fc-failed')).toHaveCount(1);
  await page.screenshot({ path: 'test-results/e2e/chat-invalid-file.png' });
  console.log(`engine's message for a text file renamed .png: ${await error.locator('.fc-error-text').textContent()}`);

  // and then a normal question about a real image works
  await page.setInputFiles('#file', imagePath);
  const answer = await askAndWait(page, item.question);
  expect(answer.trim().length).toBeGreaterThan(0);
  await expect(error).toBeHidden();
});
