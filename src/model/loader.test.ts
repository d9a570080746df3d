/**
 * The same model reference works in a page and in Node: "/models/<name>" is fetched from the
 * dev server in Chromium and read from public/models in Node. Checks the tiny models' golden
 * greedy outputs through that path, and Cache Storage in the browser.
 */
import { describe, expect, it } from 'vitest';
import { loadModel } from './loader.ts';
import { ReferenceModel } from './reference.ts';
import { MODEL_CACHE_NAME, resolveSource, urlSource } from './source.ts';

const inBrowser = typeof window !== 'undefined';

describe(`loadModel via resolveSource (${inBrowser ? 'browser' : 'node'})`, () => {
  for (const name of ['tiny-llama-gqa', 'tiny-qwen2-sharded']) {
    it(`${name}: golden greedy`, async () => {
      const source = resolveSource(`/models/${name}`);
      const model = await loadModel(source);
      const golden = JSON.parse(new TextDecoder().decode(await source.readFile('reference_greedy.json'))) as { prompt_ids: number[]; ids: number[] };
      const n = golden.ids.length - golden.prompt_ids.length;
      expect(new ReferenceModel(model.config, model.weights).greedy(golden.prompt_ids, n, [])).toEqual(golden.ids.slice(golden.prompt_ids.length));
    });
  }

  it('a missing file is missing (not the dev server\'s index.html)', async () => {
    const source = resolveSource('/models/tiny-qwen2');
    expect(await source.has('config.json')).toBe(true);
    expect(await source.has('model.safetensors.index.json')).toBe(false);
    await expect(source.readFile('model.safetensors.index.json')).rejects.toThrow(/model.safetensors.index.json/);
  });

  it.runIf(inBrowser)('caches downloads in Cache Storage when asked', async () => {
    await caches.delete(MODEL_CACHE_NAME);
    const src = urlSource('/models/tiny-qwen2', { cache: true });
    const first = await src.readFile('config.json');
    const cache = await caches.open(MODEL_CACHE_NAME);
    const hit = await cache.match(new URL('/models/tiny-qwen2/config.json', location.href).href);
    expect(hit).toBeDefined();
    expect(new Uint8Array(await hit!.arrayBuffer())).toEqual(first);
    const events: number[] = [];
    expect(await src.readFile('config.json', (p) => events.push(p.loaded))).toEqual(first);
    expect(events[events.length - 1]).toBe(first.length);
    await caches.delete(MODEL_CACHE_NAME);
  });
});
