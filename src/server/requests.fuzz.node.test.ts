/**
 * Property-based fuzzing of the OpenAI-compatible server's request path (fast-check; knobs in
 * test/fuzz.ts): random JSON, JSON that is nearly a request (every field with wrong types or
 * values, messages of wrong shapes, hostile text), and bytes that are no JSON at all, POSTed to
 * /v1/chat/completions. Every response is either an answer (200: a chat.completion, or an SSE
 * stream that ends in [DONE] or an error event) or a client error (4xx with OpenAI's error body,
 * a message and a type); never a 5xx, a dropped connection or a hang. Afterwards the server
 * still answers and the engine is idle.
 *
 *   FUZZ_RUNS=20000 npx vitest run --project node src/server/requests.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzParams } from '../../test/fuzz.ts';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { fieldOverrides, hostileMessages, hostileText, settle, Tally } from '../../test/request-fuzz.ts';
import { Engine } from '../engine/engine.ts';
import { startOpenAIServer, type OpenAIServer } from './openai-server.ts';

const NAME = 'tiny-llama-gqa';
let engine: Engine;
let server: OpenAIServer;

beforeAll(async () => {
  engine = await Engine.load(await testGpu(), modelRef(NAME), { kvPages: 64 });
  server = await startOpenAIServer(engine, { port: 0, servedModelName: NAME });
});
afterAll(async () => {
  await server?.close();
  await engine?.destroy();
});

const base = { model: NAME, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 2 };

/** Request bodies: nearly-valid requests, random JSON, and text that is no JSON. */
const body: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fieldOverrides, fc.boolean()).map(([f, stream]) => JSON.stringify({ ...base, stream, ...f })) },
  { weight: 3, arbitrary: fc.tuple(hostileMessages, fc.boolean()).map(([messages, stream]) => JSON.stringify({ ...base, stream, messages })) },
  { weight: 2, arbitrary: hostileText.map((content) => JSON.stringify({ ...base, messages: [{ role: 'user', content }] })) },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', '{', '{"messages":', 'null', '[]', '{"messages":[]}', '\u0000', '{"a":1}{"b":2}')) },
);

async function post(text: string): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** An answer: a chat.completion, or an SSE stream of chunks ending in [DONE] (or an error event, then the end). */
function expectAnswer(r: { type: string; text: string }): void {
  if (r.type.startsWith('text/event-stream')) {
    const events = r.text.split('\n\n').filter(Boolean);
    const last = events.at(-1)!;
    if (last === 'data: [DONE]') {
      for (const e of events.slice(0, -1)) expect(JSON.parse(e.replace(/^data: /, '')).object).toBe('chat.completion.chunk');
    } else expect(JSON.parse(last.replace(/^data: /, '')).error.message).toEqual(expect.any(String));
    return;
  }
  const c = JSON.parse(r.text);
  expect(c.object).toBe('chat.completion');
  expect(typeof c.choices[0].message.content).toBe('string');
}

describe('fuzzed request bodies: an answer or a 4xx with a message, never a 5xx or a hang', () => {
  it('POST /v1/chat/completions', async () => {
    const t = new Tally();
    await fc.assert(
      fc.asyncProperty(body, async (text) => {
        const r = await settle(post(text), 'POST /v1/chat/completions');
        if ('err' in r) throw new Error(`the request failed: ${r.err.message}`); // a dropped connection
        const res = r.ok;
        t.add(res.status === 200 ? 'answered' : `${res.status}`);
        if (res.status === 200) expectAnswer(res);
        else {
          expect(res.status, res.text).toBeGreaterThanOrEqual(400);
          expect(res.status, res.text).toBeLessThan(500);
          const e = JSON.parse(res.text).error;
          expect(typeof e.message).toBe('string');
          expect(e.message.length).toBeGreaterThan(0);
          expect(e.type).toBe('invalid_request_error');
        }
      }),
      fuzzParams(),
    );
    console.log(`POST /v1/chat/completions: ${t}`);
    expect((await fetch(`${server.url}/v1/models`)).status).toBe(200);
    engine.checkIdle();
  });
});
