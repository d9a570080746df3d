/**
 * `engine.chat.completions.create` speaks OpenAI: the shapes of a completion
 * and of streamed chunks, usage, `stop`, `max_tokens`, aborts (leaving the
 * stream, or by request_id from another caller) and errors that come before
 * anything streams. tiny-llama-gqa, greedy; Node (dawn) and headless Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from './engine.ts';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import type { ChatMessage, EngineEvent } from './types.ts';

const messages: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Tell me a story about a cat.' },
];

let engine: Engine;
const events: EngineEvent[] = [];
beforeAll(async () => {
  engine = await Engine.load(await testGpu(), modelRef('tiny-llama-gqa'), { kvPages: 32 });
  engine.on((e) => events.push(e));
});
afterAll(() => engine.destroy());

async function collect(req: ChatCompletionRequest): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const c of await engine.chat.completions.create({ ...req, stream: true })) chunks.push(c);
  return chunks;
}

/** The non-streaming form. */
const complete = (req: ChatCompletionRequest) => engine.chat.completions.create({ ...req, stream: false });

const text = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0].delta.content ?? '').join('');

function expectAllPagesFree(): void {
  expect(engine.snapshot().pool.pagesInUse).toBe(0);
  expect([engine.snapshot().requestsRunning, engine.snapshot().requestsWaiting]).toEqual([0, 0]);
}

describe('chat.completions.create', () => {
  it('returns a chat.completion whose content equals the streamed content and the engine’s own text', async () => {
    const req: ChatCompletionRequest = { messages, temperature: 0, max_tokens: 24 };
    const before = Math.floor(Date.now() / 1000);
    const c = await complete(req);
    expect(c.object).toBe('chat.completion');
    expect(c.model).toBe(engine.modelId);
    expect(c.id).toMatch(/\S/);
    expect(c.created).toBeGreaterThanOrEqual(before);
    expect(c.choices).toHaveLength(1);
    const [choice] = c.choices;
    expect([choice.index, choice.message.role, choice.logprobs]).toEqual([0, 'assistant', null]);

    const direct = await engine.generate(engine.encode(messages), { maxTokens: 24 }); // greedy by default too
    expect(choice.message.content).toBe(direct.text);
    expect(choice.message.content.length).toBeGreaterThan(0);
    expect(choice.finish_reason).toBe(direct.finishReason);
    expect(c.usage.prompt_tokens).toBe(engine.encode(messages).length);
    expect(c.usage.completion_tokens).toBe(direct.tokens.length);
    expect(c.usage.total_tokens).toBe(c.usage.prompt_tokens + c.usage.completion_tokens);
    expect(c.usage.extra.completionTokens).toBe(c.usage.completion_tokens);
    expect(c.usage.extra.ttftMs).toBeGreaterThanOrEqual(0);

    const chunks = await collect(req);
    expect(text(chunks)).toBe(choice.message.content);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.slice(1).every((ch) => ch.choices[0].delta.role === undefined)).toBe(true);
    expect(new Set(chunks.map((ch) => ch.id)).size).toBe(1);
    expect(chunks.every((ch) => ch.object === 'chat.completion.chunk' && ch.model === engine.modelId)).toBe(true);
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe(choice.finish_reason);
    expect(last.usage).toMatchObject({ prompt_tokens: c.usage.prompt_tokens, completion_tokens: c.usage.completion_tokens, total_tokens: c.usage.total_tokens });
    expect(chunks.slice(0, -1).every((ch) => ch.choices[0].finish_reason === null && ch.usage === undefined)).toBe(true);
    expectAllPagesFree();
  });

  it('max_tokens ends the reply with finish_reason "length"', async () => {
    const c = await complete({ messages, temperature: 0, max_tokens: 5, ignore_eos: true });
    expect(c.choices[0].finish_reason).toBe('length');
    expect(c.usage.completion_tokens).toBe(5);
    const chunks = await collect({ messages, temperature: 0, max_tokens: 5, ignore_eos: true });
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(5);
  });

  it('`stop` ends the text right before the stop string, streamed or not', async () => {
    const full = (await complete({ messages, temperature: 0, max_tokens: 40, ignore_eos: true })).choices[0].message.content;
    // a printable 3-character piece of the reply whose first occurrence leaves some text before it
    let stop = '';
    for (let k = 3; k + 3 <= full.length && !stop; k++) {
      const s = full.slice(k, k + 3);
      if (/^[ -~]{3}$/.test(s) && full.indexOf(s) >= 3) stop = s;
    }
    expect(stop, `no usable stop string in ${JSON.stringify(full)}`).not.toBe('');
    const want = full.slice(0, full.indexOf(stop));
    const req: ChatCompletionRequest = { messages, temperature: 0, max_tokens: 40, ignore_eos: true, stop: ['never-in-this-text', stop] };
    const c = await complete(req);
    expect(c.choices[0].message.content).toBe(want);
    expect(c.choices[0].finish_reason).toBe('stop');
    expect(c.usage.completion_tokens).toBeLessThan(40);
    const chunks = await collect({ ...req, stop }); // a plain string works too
    expect(text(chunks)).toBe(want); // text held back while it might start the stop string never leaks
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('stop');
    expectAllPagesFree();
  });

  it('leaving the stream early aborts the request and frees its pages at once', async () => {
    const aborted = engine.snapshot().requestsAborted;
    const stream = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 60, ignore_eos: true, stream: true, request_id: 'leaver' });
    let n = 0;
    for await (const _ of stream) if (++n === 3) break;
    expectAllPagesFree();
    expect(engine.snapshot().requestsAborted).toBe(aborted + 1);
    expect(events.some((e) => e.kind === 'request-finished' && e.id === 'leaver' && e.finishReason === 'abort')).toBe(true);
    expect(await engine.abort('leaver')).toBe(false); // already gone
  });

  it('abort by request_id from another caller ends the stream with finish_reason "abort"', async () => {
    const chunks: ChatCompletionChunk[] = [];
    const stream = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 60, ignore_eos: true, stream: true, request_id: 'shared-7' });
    const otherCaller = async () => {
      while (chunks.length < 3) await new Promise((r) => setTimeout(r, 1));
      return engine.abort('shared-7');
    };
    const [, ok] = await Promise.all([(async () => { for await (const c of stream) chunks.push(c); })(), otherCaller()]);
    expect(ok).toBe(true);
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe('abort');
    expect(last.usage!.completion_tokens).toBeGreaterThanOrEqual(2);
    expect(last.usage!.completion_tokens).toBeLessThan(60);
    expectAllPagesFree();
    // the id is free again once its request ended
    const again = await complete({ messages, temperature: 0, max_tokens: 2, request_id: 'shared-7' });
    expect(again.id).toBe('shared-7');
  });

  it('a request id already running is refused', async () => {
    const first = await engine.chat.completions.create({ messages, max_tokens: 30, ignore_eos: true, stream: true, request_id: 'dup' });
    await expect(engine.chat.completions.create({ messages, request_id: 'dup' })).rejects.toThrow(/'dup' is already running/);
    let n = 0;
    for await (const _ of first) n++;
    expect(n).toBeGreaterThan(1);
  });

  describe('bad requests fail before anything streams', () => {
    it.each<[string, ChatCompletionRequest, RegExp, ErrorConstructor]>([
      ['a model that is not loaded', { model: 'gpt-4o', messages }, /model 'gpt-4o' is not loaded/, Error],
      ['no messages', { messages: [] }, /'messages' must be a non-empty array/, TypeError],
      ['a bad role', { messages: [{ role: 'tool', content: 'x' } as unknown as ChatMessage] }, /role 'system' \| 'user' \| 'assistant'/, TypeError],
      ['content that is not a string', { messages: [{ role: 'user', content: 42 } as unknown as ChatMessage] }, /content: a string or parts/, TypeError],
      ['temperature 5', { messages, temperature: 5 }, /'temperature' must be between 0 and 2, got 5/, RangeError],
      ['top_p 1.5', { messages, top_p: 1.5 }, /'top_p' must be between 0 and 1/, RangeError],
      ['max_tokens 0', { messages, max_tokens: 0 }, /max_tokens\) must be a positive integer/, RangeError],
      // found by src/engine/requests.fuzz.node.test.ts: these were coerced ("0.5" >= 0) or crashed deep in the engine
      ['stop holding a null', { messages, stop: [null] } as unknown as ChatCompletionRequest, /'stop' must be a string or an array of strings, got an array/, TypeError],
      ['temperature as a string', { messages, temperature: '0.5' } as unknown as ChatCompletionRequest, /'temperature' must be a number between 0 and 2, got "0.5"/, TypeError],
      ['seed as an object', { messages, seed: {} } as unknown as ChatCompletionRequest, /'seed' must be an integer, got an object/, TypeError],
      ['a press without a ratio', { messages, kv_compression: { press: 'knorm' } } as unknown as ChatCompletionRequest, /'kv_compression.ratio' is missing/, TypeError],
    ])('%s', async (_, req, message, type) => {
      const seen = events.length;
      for (const stream of [false, true]) {
        const p = engine.chat.completions.create({ ...req, stream });
        await expect(p).rejects.toThrow(message);
        await expect(p).rejects.toBeInstanceOf(type);
      }
      expect(events.slice(seen).filter((e) => e.kind === 'request-queued')).toEqual([]);
      expectAllPagesFree();
    });
  });
});
