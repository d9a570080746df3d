/**
 * Property-based fuzzing of what callers hand the engine (fast-check; knobs in test/fuzz.ts):
 * hostile prompt text (lone surrogates, controls, special tokens, up to 100k characters),
 * chat messages of wrong shapes, and every `chat.completions.create` field with wrong types or
 * out-of-range values, streaming and not, streams left early. Each case ends in a clear error
 * (a plain message, not a JS crash such as "Cannot read properties of undefined") or a normal
 * answer, within a time bound; afterwards the engine is idle (checkIdle: every page free, no
 * request queued or running).
 *
 *   FUZZ_RUNS=20000 npx vitest run --project node src/engine/requests.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fuzzParams } from '../../test/fuzz.ts';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { fieldOverrides, hostileMessages, hostileText, settle, Tally } from '../../test/request-fuzz.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';
import { Engine } from './engine.ts';

let engine: Engine;
const realFetch = globalThis.fetch;

beforeAll(async () => {
  // image URLs in fuzzed messages: data: URLs are read, anything else fails at once (no network, no hang)
  vi.stubGlobal('fetch', (url: unknown, init?: RequestInit) => (String(url).startsWith('data:') ? realFetch(String(url), init) : Promise.reject(new TypeError('fetch failed (fuzz: no network)'))));
  engine = await Engine.load(await testGpu(), modelRef('tiny-llama-gqa'), { kvPages: 64 });
});
afterAll(async () => {
  vi.unstubAllGlobals();
  await engine?.destroy();
});

const FINISH = ['stop', 'length', 'abort'];

/** After a case: nothing left running or holding pages (a stream left early is cancelled at the next step). */
async function expectIdle(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = engine.snapshot();
    if (s.requestsRunning === 0 && s.requestsWaiting === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  engine.checkIdle();
}

function expectCompletion(c: ChatCompletion, maxTokens: number | undefined): void {
  expect(c.object).toBe('chat.completion');
  expect(typeof c.choices[0].message.content).toBe('string');
  expect(FINISH).toContain(c.choices[0].finish_reason);
  expect(Number.isInteger(c.usage.completion_tokens) && c.usage.completion_tokens >= 0).toBe(true);
  if (typeof maxTokens === 'number') expect(c.usage.completion_tokens).toBeLessThanOrEqual(maxTokens);
}

/** Reads a stream to its end, or leaves it after `leaveAfter` chunks; checks every chunk's shape. */
async function readStream(s: AsyncIterable<ChatCompletionChunk>, leaveAfter: number | null): Promise<void> {
  let n = 0;
  let finished = false;
  for await (const c of s) {
    expect(c.object).toBe('chat.completion.chunk');
    expect(finished).toBe(false); // nothing after the final chunk
    if (c.usage) {
      expect(FINISH).toContain(c.choices[0].finish_reason);
      finished = true;
    } else expect(typeof c.choices[0].delta.content).toBe('string');
    if (leaveAfter !== null && ++n >= leaveAfter) break;
  }
  if (leaveAfter === null) expect(finished).toBe(true);
}

describe('fuzzed prompts and requests: a clear error or a normal answer, then idle', () => {
  it('hostile prompt text through generate', async () => {
    const t = new Tally();
    await fc.assert(
      fc.asyncProperty(hostileText, fc.integer({ min: 1, max: 3 }), async (prompt, maxTokens) => {
        const r = await settle(engine.generate(prompt, { maxTokens, sampling: { temperature: 0 } }), 'generate');
        t.add('ok' in r ? 'answered' : 'refused');
        if ('ok' in r) {
          expect(['stop', 'length']).toContain(r.ok.finishReason);
          expect(r.ok.tokens.length).toBeLessThanOrEqual(maxTokens);
          expect(typeof r.ok.text).toBe('string');
        } else expect(r.err.message).toMatch(/prompt|token|context/i);
        await expectIdle();
      }),
      fuzzParams(),
    );
    console.log(`${expect.getState().currentTestName}: ${t}`);
  });

  it('hostile text as chat message content', async () => {
    const t = new Tally();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom('system', 'user', 'assistant'), hostileText), { minLength: 1, maxLength: 3 }), async (turns) => {
        const messages = turns.map(([role, content]) => ({ role, content })) as ChatCompletionRequest['messages'];
        const r = await settle(engine.chat.completions.create({ messages, max_tokens: 2 }), 'chat');
        t.add('ok' in r ? 'answered' : 'refused');
        if ('ok' in r) expectCompletion(r.ok, 2);
        await expectIdle();
      }),
      fuzzParams(),
    );
    console.log(`${expect.getState().currentTestName}: ${t}`);
  });

  it('chat messages of wrong shapes', async () => {
    const t = new Tally();
    await fc.assert(
      fc.asyncProperty(hostileMessages, async (messages) => {
        const r = await settle(engine.chat.completions.create({ messages: messages as ChatCompletionRequest['messages'], max_tokens: 2 }), 'chat');
        t.add('ok' in r ? 'answered' : 'refused');
        if ('ok' in r) expectCompletion(r.ok, 2);
        else expect(r.err.message).toMatch(/message|content|role|image|text|prompt|part/i);
        await expectIdle();
      }),
      fuzzParams(),
    );
    console.log(`${expect.getState().currentTestName}: ${t}`);
  });

  it('every request field with wrong types or out-of-range values, streaming or not, streams left early', async () => {
    const t = new Tally();
    await fc.assert(
      fc.asyncProperty(fieldOverrides, fc.boolean(), fc.option(fc.integer({ min: 1, max: 3 })), async (fields, stream, leaveAfter) => {
        const req = { messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 2, stream, ...fields } as ChatCompletionRequest;
        const keys = Object.keys(fields);
        const r = await settle((async () => {
          const out = await engine.chat.completions.create(req);
          if (Symbol.asyncIterator in out) await readStream(out, leaveAfter);
          else expectCompletion(out, typeof req.max_tokens === 'number' ? req.max_tokens : undefined);
        })(), `chat with ${JSON.stringify(fields)}`);
        t.add('ok' in r ? (req.stream === true ? 'streamed' : 'answered') : 'refused');
        if ('err' in r && keys.length === 1) expect(r.err.message, `the error names ${keys[0]}`).toMatch(fieldPattern(keys[0]));
        await expectIdle();
      }),
      fuzzParams(),
    );
    console.log(`${expect.getState().currentTestName}: ${t}`);
  });
});

/** How an error about `field` may name it: as sent, in the engine's own words, or one of its parts. */
function fieldPattern(field: string): RegExp {
  const alias: Record<string, string> = {
    max_tokens: 'max_tokens|maxTokens|KV pool|context', kv_compression: 'kv_compression|press|ratio|window|compression', kv_window: 'kv_window|sinks|recent|window',
    cache_prefix: 'cache_prefix|until|press|ratio|prefix', stop: 'stop', request_id: 'request_id|requestId|id', model: 'model', top_k: 'top_k|topK', top_p: 'top_p|topP',
  };
  return new RegExp(alias[field] ?? field, 'i');
}

