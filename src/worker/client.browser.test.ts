/**
 * The page ↔ Worker path in a real browser: WorkerEngine drives the engine
 * (through the Worker's hub) in a dedicated Worker over comlink, with the
 * same answers as in-process; then the same in the SharedWorker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as Comlink from 'comlink';
import { WorkerEngine } from './client.ts';
import type { EngineConnection } from './protocol.ts';
import type { ChatCompletionChunk } from '../api/openai-types.ts';
import type { EngineInfo } from '../api/stats.ts';

describe('WorkerEngine (comlink)', () => {
  let engine: WorkerEngine;
  let loaded: EngineInfo;
  beforeAll(async () => {
    engine = WorkerEngine.create();
    const progress: string[] = [];
    loaded = await engine.load('/models/tiny-llama-gqa', { kvPages: 32, onProgress: (p) => progress.push(p.file) });
    expect(loaded.architecture).toBe('llama');
    expect(progress).toContain('model.safetensors'); // progress is heard before load() resolves
  });
  afterAll(() => engine.terminate());

  it('info() is what load() reported; stats() counts this page as the one client', async () => {
    expect(await engine.info()).toEqual(loaded);
    expect(loaded.kvPages).toBe(32);
    expect((await engine.stats()).clients).toBe(1);
  });

  const messages = [{ role: 'user' as const, content: 'Once upon a time' }];

  it('streams chunks that add up to the non-streaming answer, with usage last', async () => {
    const full = await engine.chat.completions.create({ messages, max_tokens: 24, temperature: 0, ignore_eos: true });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of await engine.chat.completions.create({ messages, max_tokens: 24, temperature: 0, ignore_eos: true, stream: true })) chunks.push(c);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(full.choices[0].message.content);
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe('length');
    expect(last.usage!.completion_tokens).toBe(24);
    expect(last.usage!.extra.ttftMs).toBeGreaterThan(0);
  });

  it('aborts a streaming request by id from the page and frees its pages', async () => {
    const stream = await engine.chat.completions.create({ messages, max_tokens: 200, temperature: 0, ignore_eos: true, stream: true, request_id: 'to-abort' });
    let n = 0;
    let reason: string | null = null;
    let found: boolean | null = null;
    for await (const c of stream) {
      if (++n === 3) found = await engine.abort('to-abort');
      reason = c.choices[0].finish_reason ?? reason;
    }
    expect(found).toBe(true);
    expect(reason).toBe('abort');
    expect(await engine.abort('to-abort')).toBe(false); // over
    const stats = await engine.stats();
    expect(stats.pool.pagesInUse).toBe(0);
    expect(stats.requestsAborted).toBe(1);
  });

  it('leaving the loop early aborts the request in the Worker', async () => {
    const before = (await engine.stats()).requestsAborted;
    let n = 0;
    for await (const _ of await engine.chat.completions.create({ messages, max_tokens: 200, temperature: 0, ignore_eos: true, stream: true })) if (++n === 2) break;
    await expect.poll(async () => (await engine.stats()).requestsAborted).toBe(before + 1);
    expect((await engine.stats()).pool.pagesInUse).toBe(0);
  });

  it('an invalid request rejects from create() with the engine error', async () => {
    await expect(engine.chat.completions.create({ messages: [], stream: true })).rejects.toThrow(/non-empty array/);
    await expect(engine.chat.completions.create({ messages, temperature: 5 })).rejects.toThrow(/temperature/);
  });
});

/**
 * The SharedWorker (shared.worker.ts) in Chromium: engines made with
 * `{ shared: true }` are connections to one hub, so the model loads once;
 * a "tab" that holds a Web Lock and goes away (releases it) is closed by the
 * hub — its stream stops, its pages are freed — while the others run on.
 */
describe('WorkerEngine.create({ shared: true }) (SharedWorker)', () => {
  const opts = { kvPages: 32 };
  let a: WorkerEngine;
  let b: WorkerEngine;
  beforeAll(async () => {
    [a, b] = [WorkerEngine.create({ shared: true }), WorkerEngine.create({ shared: true })];
    await Promise.all([a.load('/models/tiny-llama-gqa', opts), b.load('/models/tiny-llama-gqa', opts)]);
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  const req = { messages: [{ role: 'user' as const, content: 'Once upon a time' }], max_tokens: 16, temperature: 0, ignore_eos: true };

  it('two engines are two connections to one hub: one load, the same greedy answer', async () => {
    expect([a.kind, b.kind, a.fallbackReason]).toEqual(['shared', 'shared', null]);
    const s = await a.stats();
    expect(s).toMatchObject({ clients: 2, engineLoads: 1, worker: 'shared' });
    expect(await a.probe()).toMatchObject({ kind: 'shared', webgpu: true, gpu: true });
    const [ra, rb] = await Promise.all([a.chat.completions.create(req), b.chat.completions.create(req)]);
    expect(ra.choices[0].message.content).toBe(rb.choices[0].message.content);
    expect(ra.usage.completion_tokens).toBe(16);
  });

  it('a tab that goes away (its Web Lock released): the hub closes it, its stream stops and its pages are freed; the other tab’s answer completes', async () => {
    // a raw connection standing for another tab, holding its lifetime lock as client.ts does
    const port = new SharedWorker(new URL('./shared.worker.ts', import.meta.url), { type: 'module', name: 'fastcache-engine' }).port;
    const tab = Comlink.wrap<EngineConnection>(port);
    const name = `test-tab-${crypto.randomUUID()}`;
    let closeTab!: () => void;
    await new Promise<void>((held) => void navigator.locks.request(name, () => (held(), new Promise<void>((r) => (closeTab = r)))));
    expect(await tab.watchLock(name)).toBe(true);
    await tab.load('/models/tiny-llama-gqa', opts);
    const before = await b.stats();
    expect(before.clients).toBe(3);
    let tabChunks = 0;
    const tabDone = tab.createCompletion({ ...req, max_tokens: 400, stream: true }, Comlink.proxy(() => void tabChunks++));
    const bChunks: ChatCompletionChunk[] = [];
    let seenByB = 0;
    const bStream = await b.chat.completions.create({ ...req, max_tokens: 40, stream: true });
    for await (const c of bStream) {
      bChunks.push(c);
      if (bChunks.length === 5) {
        await expect.poll(() => tabChunks).toBeGreaterThan(2); // both stream
        seenByB = tabChunks;
        closeTab(); // the tab is gone
      }
    }
    expect(bChunks.at(-1)!.choices[0].finish_reason).toBe('length');
    expect(bChunks.at(-1)!.usage!.completion_tokens).toBe(40);
    expect(bChunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe((await b.chat.completions.create({ ...req, max_tokens: 40 })).choices[0].message.content);
    await expect.poll(async () => (await b.stats()).clients).toBe(2);
    void tabDone.catch(() => null); // its reply may never come: the hub closed the port
    tab[Comlink.releaseProxy]();
    const after = await b.stats();
    expect(tabChunks).toBeLessThan(400);
    expect(tabChunks).toBeGreaterThanOrEqual(seenByB);
    expect(after).toMatchObject({ requestsRunning: 0, requestsAborted: before.requestsAborted + 1, engineLoads: 1 });
    expect(after.pool.pagesInUse).toBe(0);
  });
});
