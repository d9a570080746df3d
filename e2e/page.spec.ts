import { expect, test } from '@playwright/test';

test('the page loads the default model in its Worker and streams a story', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('/');
  await expect(page.locator('#status')).toContainText('Ready', { timeout: 90_000 });
  await page.fill('#max-tokens', '40');
  await page.click('#go');
  await expect(page.locator('body')).toHaveAttribute('data-done', 'true', { timeout: 90_000 });
  const text = await page.locator('#output').textContent();
  expect(text!.startsWith('Once upon a time')).toBe(true);
  expect(text!.length).toBeGreaterThan('Once upon a time'.length + 20);
  await expect(page.locator('#metrics')).toContainText('tokens');
  await page.screenshot({ path: 'test-results/e2e/page-after-story.png' });
  expect(errors).toEqual([]);
});
