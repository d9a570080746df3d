import { expect, test } from '@playwright/test';

// The page on the text model (stories260K): it loads in the Worker with a
// progress bar, streams an answer as text (Stop ends it), shows the
// metrics, renders markup as text, and starts over with New chat.
test('the page loads a model in its Worker and streams an answer with metrics', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/?model=/models/stories260K');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 90_000 });
  await expect(page.locator('#status')).toContainText('Ready: ');
  await expect(page.locator('#progress')).toHaveAttribute('data-done', 'true');
  expect(await page.locator('#progress li progress').count()).toBeGreaterThan(0); // one bar per file the engine reported
  await expect(page.locator('#random-weights')).toBeHidden();
  await expect(page.locator('#model-select')).toHaveValue('/models/stories260K');

  // a long answer: screenshot while it streams, then Stop
  await page.fill('#max-tokens', '400');
  await page.fill('#prompt', 'Once upon a time');
  await page.click('#ask');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'generating');
  await expect(page.locator('#stop')).toBeEnabled();
  await expect(page.locator('.fc-assistant[data-streaming=true] .fc-answer')).toHaveText(/.{30}/, { timeout: 60_000 });
  await page.screenshot({ path: 'test-results/e2e/page-during-answer.png' });
  await page.click('#stop');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 30_000 });
  await expect(page.locator('.fc-assistant').first()).toHaveAttribute('data-finish', 'abort');
  await expect(page.locator('.fc-assistant .fc-meta').first()).toContainText('stopped');

  // the next turn (after the stopped one) runs to its max tokens
  await page.fill('#max-tokens', '40');
  await page.fill('#prompt', 'The next day');
  await page.click('#ask');
  await expect(page.locator('.fc-assistant')).toHaveCount(2);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 90_000 });
  await expect(page.locator('.fc-user .fc-text')).toHaveText(['Once upon a time', 'The next day']);
  await expect(page.locator('.fc-assistant').nth(1)).toHaveAttribute('data-finish', 'length');
  const answer = (await page.locator('.fc-assistant .fc-answer').nth(1).textContent())!;
  expect(answer.length).toBeGreaterThan(20);
  await expect(page.locator('[data-metric=ttft]')).toContainText('ms');
  await expect(page.locator('[data-metric=tokens-per-s]')).toHaveText(/^\d+\.\d$/);
  await expect(page.locator('[data-metric=pool]')).toContainText(' / ');
  await page.screenshot({ path: 'test-results/e2e/page-after-answer.png' });

  // model text is rendered as text: markup in a question (and so in the transcript) stays inert
  await page.fill('#max-tokens', '4');
  await page.fill('#prompt', '<img src=x onerror="window.injected=1"><b>bold</b>');
  await page.keyboard.press('Enter'); // Enter in the text box sends
  await expect(page.locator('.fc-assistant')).toHaveCount(3);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 60_000 });
  await expect(page.locator('.fc-user .fc-text').nth(2)).toHaveText('<img src=x onerror="window.injected=1"><b>bold</b>');
  expect(await page.locator('#transcript img, #transcript b').count()).toBe(0);
  expect(await page.evaluate(() => (window as unknown as { injected?: number }).injected)).toBeUndefined();

  await page.click('#new-chat');
  await expect(page.locator('.fc-msg')).toHaveCount(0);

  // a phone-sized window: one column, nothing wider than the screen
  await page.setViewportSize({ width: 390, height: 800 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await page.screenshot({ path: 'test-results/e2e/page-narrow.png', fullPage: true });
  expect(errors).toEqual([]);
});

test('a model that cannot be loaded gives a plain message, and another model still loads', async ({ page }) => {
  await page.goto('/?model=/models/no-such-model');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'error', { timeout: 60_000 });
  await expect(page.locator('#error')).toContainText('Could not load /models/no-such-model');
  await expect(page.locator('#ask')).toBeDisabled();
  // a hub id: this machine has no network, so it fails too, in plain words (where there is network, it loads)
  await page.fill('#model-ref', 'HuggingFaceTB/SmolVLM-256M-Instruct');
  await page.click('#load-model');
  await expect(page.locator('#error')).toContainText('Could not load HuggingFaceTB/SmolVLM-256M-Instruct', { timeout: 60_000 });
  console.log(`hub id without network: ${await page.locator('#error .fc-error-text').textContent()}`);
  await page.selectOption('#model-select', '/models/stories260K');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 90_000 });
  await expect(page.locator('#error')).toBeHidden();
});

test('a generated model (random weights) is labelled as giving meaningless answers', async ({ page }) => {
  await page.goto('/?model=/models/tiny-vlm-idefics3');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('#random-weights')).toBeVisible();
  await expect(page.locator('#random-weights')).toHaveText('random weights: answers are meaningless');
  await expect(page.locator('#model-select')).toHaveValue('/models/tiny-vlm-idefics3');
});
