/**
 * RemoteEngine against this project's own OpenAI-compatible server
 * (src/server/openai-server.ts), started in-process over an in-process
 * Engine: the remote answers are the local engine's, greedy, streaming and
 * not, text and images (a Blob image part travels as a data URL); an abort
 * mid-stream closes the HTTP stream and the server's engine frees the pages;
 * info() and stats() come from our /v1/info and /v1/stats; server errors
 * reject with the server's message and status. Node (dawn on SwiftShader).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from '../engine/engine.ts';
import { startOpenAIServer, type OpenAIServer } from '../server/openai-server.ts';
import { RemoteEngine, RemoteError } from './remote-engine.ts';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { ChatMessage } from '../api/chat-types.ts';
import { sureShapesItem } from '../../test/shapes-items.ts';

async function all(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}
const text = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

/** Polls until `ok` holds (the server's engine frees an aborted request's pages within a step). */
async function eventually(ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** An in-process engine on `name`, served over HTTP on a free port, and a RemoteEngine on it. */
async function serve(name: string, kvPages: number): Promise<{ engine: Engine; server: OpenAIServer; remote: RemoteEngine }> {
  const engine = await Engine.load(await testGpu(), modelRef(name), { kvPages });
  const server = await startOpenAIServer(engine, { port: 0 });
  const remote = await RemoteEngine.create({ baseURL: `${server.url}/v1` });
  return { engine, server, remote };
}

describe('RemoteEngine on our server: tiny-llama-gqa', () => {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Tell me a story about a cat.' },
  ];
  let engine: Engine;
  let server: OpenAIServer;
  let remote: RemoteEngine;
  beforeAll(async () => ({ engine, server, remote } = await serve('tiny-llama-gqa', 32)));
  afterAll(async () => {
    await server?.close();
    engine?.destroy();
  });

  it('greedy: the same text, token count and finish reason as the in-process engine, streaming and not', async () => {
    const req: ChatCompletionRequest = { messages, temperature: 0, max_tokens: 24 };
    const local = await engine.chat.completions.create({ ...req, stream: false });
    const direct = await engine.generate(engine.encode(messages), { maxTokens: 24 });
    expect(local.choices[0].message.content).toBe(direct.text);

    const whole = await remote.chat.completions.create({ ...req, stream: false, request_id: 'whole' });
    expect(whole.id).toBe('whole');
    expect(whole.choices[0].message.content).toBe(direct.text);
    expect(whole.choices[0].finish_reason).toBe(direct.finishReason);
    expect(whole.usage).toMatchObject({ prompt_tokens: engine.encode(messages).length, completion_tokens: direct.tokens.length });

    const chunks = await all(await remote.chat.completions.create({ ...req, stream: true }));
    expect(text(chunks)).toBe(direct.text);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe(direct.finishReason);
    expect(last.usage).toMatchObject({ prompt_tokens: engine.encode(messages).length, completion_tokens: direct.tokens.length });
    expect(last.usage!.extra.queueDelayMs).toBeGreaterThanOrEqual(0); // the server's own figures, not NaN
    expect(chunks.slice(0, -1).every((c) => !c.usage && c.choices[0].finish_reason === null)).toBe(true);
  });

  it('sampling options travel: a seeded sample equals the local one; ignore_eos + max_tokens gives exactly max_tokens', async () => {
    const req: ChatCompletionRequest = { messages, temperature: 0.9, top_k: 20, top_p: 0.9, seed: 7, max_tokens: 16, ignore_eos: true };
    const local = await engine.chat.completions.create({ ...req, stream: false });
    const far = await remote.chat.completions.create({ ...req, stream: false });
    expect(far.choices[0].message.content).toBe(local.choices[0].message.content);
    expect(far.usage.completion_tokens).toBe(16);
    expect(far.choices[0].finish_reason).toBe('length');
  });

  it('info() is the server engine’s info; stats() its counters', async () => {
    const info = await remote.info();
    expect(info).toMatchObject({ ...(await engine.info()) });
    expect(info.remote).toMatchObject({ baseURL: `${server.url}/v1`, reportsInfo: true, reportsStats: true });
    expect(remote.stats).toBeDefined();
    const s = await remote.stats!();
    expect(s.pool.pagesTotal).toBe(engine.snapshot().pool.pagesTotal);
    expect(s.requestsFinished).toBe(engine.snapshot().requestsFinished);
  });

  it('abort mid-stream: the stream ends with finish_reason abort and the server’s engine frees its pages', async () => {
    const before = await remote.stats!();
    const stream = await remote.chat.completions.create({ messages, stream: true, max_tokens: 200, ignore_eos: true, temperature: 0, request_id: 'long' });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) {
      chunks.push(c);
      if (chunks.length === 3) {
        expect((await remote.stats!()).pool.pagesInUse).toBeGreaterThan(0);
        expect(await remote.abort('long')).toBe(true);
      }
    }
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('abort');
    expect(chunks.length).toBeLessThan(200);
    await eventually(async () => {
      const s = await remote.stats!();
      return s.pool.pagesInUse === 0 && s.requestsRunning === 0 && s.requestsWaiting === 0;
    });
    expect((await remote.stats!()).requestsAborted).toBe(before.requestsAborted + 1);
    expect(await remote.abort('long')).toBe(false);
  });

  it('server errors reject with the server’s message and status: a bad temperature, an unknown model', async () => {
    const hot = remote.chat.completions.create({ messages, temperature: 5, stream: true });
    await expect(hot).rejects.toBeInstanceOf(RemoteError);
    await expect(hot).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/'temperature' must be between 0 and 2, got 5 \(HTTP 400 from http:/) });
    const nobody = remote.chat.completions.create({ messages, model: 'no-such-model', stream: false });
    await expect(nobody).rejects.toMatchObject({ status: 404, message: expect.stringContaining("'no-such-model'") });
    await expect(RemoteEngine.create({ baseURL: `${server.url}/v1`, model: 'no-such-model' })).rejects.toThrow(/serves no model 'no-such-model'/);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });
});

describe('RemoteEngine on our server: tiny-vlm-shapes, an image as a Blob', () => {
  const MODEL = 'public/models/tiny-vlm-shapes';
  const { item, imagePath, sure } = sureShapesItem(MODEL);

  let engine: Engine;
  let server: OpenAIServer;
  let remote: RemoteEngine;
  beforeAll(async () => ({ engine, server, remote } = await serve('tiny-vlm-shapes', 128)));
  afterAll(async () => {
    await server?.close();
    engine?.destroy();
  });

  it('answers the image question as the in-process engine does (and as PyTorch does)', async () => {
    const image = new Blob([readFileSync(imagePath)], { type: 'image/png' });
    const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text: item.question }] }];
    const local = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 16, stream: false });
    const chunks = await all(await remote.chat.completions.create({ messages, temperature: 0, max_tokens: 16, stream: true }));
    expect(text(chunks)).toBe(local.choices[0].message.content);
    if (sure) expect(text(chunks).trim()).toBe(item.answer);
    expect(chunks.at(-1)!.usage!.prompt_tokens).toBe(local.usage.prompt_tokens);
    expect((await remote.info()).vision).toBe(true);
    const s = await remote.stats!();
    expect(s.vision.featureCacheHits).toBeGreaterThan(0); // the same image twice: encoded once, on the server
    expect(s.pool.pagesInUse).toBe(0);
  });
});
