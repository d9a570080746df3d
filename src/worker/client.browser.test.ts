/**
 * The page ↔ Worker path in a real browser: WorkerEngine drives the engine
 * (through the Worker's hub) in a dedicated Worker over comlink, with the
 * same answers as in-process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerEngine } from './client.ts';
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
