import { expect, test } from '@playwright/test';

// The engine runs in a Worker: while it generates, the page's main thread
// must stay free — the streamed text, the metrics polling and the live plot
// included. The Long Tasks API reports every main-thread task over 50 ms. A
// 10 ms interval's lateness is logged too, but not asserted: on a 2-core
// machine where SwiftShader keeps both cores busy, the OS sometimes delays
// the renderer's thread though no task of ours is running.
test('the main thread stays responsive while the Worker generates', async ({ page }) => {
  await page.goto('/?model=/models/stories260K');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 90_000 });
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[]; lateness: number[]; frames: string[] };
    w.longTasks = [];
    w.lateness = [];
    w.frames = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.longTasks.push(e.duration))).observe({ type: 'longtask', buffered: false });
    // for the log: which script a blocking frame ran (Long Animation Frames API), if any of ours did
    type Frame = PerformanceEntry & { blockingDuration: number; scripts: { invoker: string; duration: number; sourceFunctionName: string; sourceURL: string }[] };
    new PerformanceObserver((list) => (list.getEntries() as Frame[]).forEach((f) => {
      if (f.blockingDuration > 0) w.frames.push(`${f.duration.toFixed(0)} ms: ${f.scripts.map((s) => `${s.invoker} ${s.duration.toFixed(0)} ms ${s.sourceFunctionName} (${s.sourceURL.split('/').pop()})`).join('; ') || 'no script'}`);
    })).observe({ type: 'long-animation-frame', buffered: false });
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      w.lateness.push(now - last - 10);
      last = now;
    }, 10);
  });
  await page.fill('#max-tokens', '200');
  await page.fill('#prompt', 'Once upon a time');
  await page.click('#ask');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'done', { timeout: 120_000 });
  const { longTasks, lateness, frames } = await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[]; lateness: number[]; frames: string[] };
    return { longTasks: w.longTasks, lateness: w.lateness, frames: w.frames };
  });
  const worstTask = Math.max(0, ...longTasks);
  const sorted = [...lateness].sort((a, b) => a - b);
  const p99 = sorted[Math.floor(sorted.length * 0.99)];
  console.log(`during generation: ${longTasks.length} long tasks (worst ${worstTask.toFixed(1)} ms); 10 ms timer: ${lateness.length} samples, lateness p99 ${p99.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`);
  if (frames.length) console.log(`blocking frames: ${frames.join(' | ')}`);
  expect(lateness.length).toBeGreaterThan(20); // the generation really took a while
  expect(Number(await page.locator('#plot').getAttribute('data-samples'))).toBeGreaterThan(0); // the live plot was drawn meanwhile
  expect(worstTask).toBeLessThan(50);

  // the probe itself works: a deliberate 80 ms block on the main thread is seen
  const seen = await page.evaluate(async () => {
    const w = window as unknown as { longTasks: number[] };
    setTimeout(() => {
      const t0 = performance.now();
      while (performance.now() - t0 < 80);
    }, 0);
    await new Promise((r) => setTimeout(r, 300));
    return Math.max(0, ...w.longTasks);
  });
  expect(seen).toBeGreaterThanOrEqual(80);
});
