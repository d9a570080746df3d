/**
 * The page ↔ Worker path in a real browser: WorkerEngine drives the engine
 * in a dedicated Worker through comlink, with the same answers as in-process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerEngine } from './client.ts';
import type { ChatCompletionChunk } from '../engine/openai-types.ts';

describe('WorkerEngine (comlink)', () => {
  let engine: WorkerEngine;
  beforeAll(async () => {
    engine = WorkerEngine.create();
    const progress: string[] = [];
    const info = await engine.load('/models/tiny-llama-gqa', { kvPages: 32, onProgress: (p) => progress.push(p.file) });
    expect(info.architecture).toBe('llama');
    expect(progress).toContain('model.safetensors');
  });
  afterAll(() => engine.terminate());

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
    for await (const c of stream) {
      if (++n === 3) await engine.abort('to-abort');
      reason = c.choices[0].finish_reason ?? reason;
    }
    expect(reason).toBe('abort');
    const stats = await engine.stats();
    expect(stats.pool.pagesInUse).toBe(0);
    expect(stats.requestsAborted).toBe(1);
  });

  it('an invalid request rejects from create() with the engine error', async () => {
    await expect(engine.chat.completions.create({ messages: [], stream: true })).rejects.toThrow(/non-empty array/);
    await expect(engine.chat.completions.create({ messages, temperature: 5 })).rejects.toThrow(/temperature/);
  });
});
