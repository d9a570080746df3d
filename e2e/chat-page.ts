import { expect, type Page } from '@playwright/test';

/** Asks `question` on the chat page (or the element's shadow root) and waits for the whole answer; returns its text. */
export async function askAndWait(page: Page, question: string): Promise<string> {
  const answers = page.locator('.fc-assistant');
  const n = await answers.count();
  await page.fill('#prompt', question);
  await page.click('#ask');
  await expect(answers).toHaveCount(n + 1);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  return (await answers.nth(n).locator('.fc-answer').textContent()) ?? '';
}
