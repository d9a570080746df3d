/**
 * The OpenAI-compatible server, started in-process on port 0 over real
 * engines (tiny-llama-gqa for text, tiny-vlm-shapes for an image), called
 * with the official `openai` client as a user would (and with `fetch` where
 * the client cannot send what a test needs: malformed JSON, oversize bodies,
 * other methods, CORS headers). Answers equal the engine's own
 * `chat.completions.create`; a client that leaves mid-stream aborts its
 * request and the engine frees its pages; bad input gets OpenAI-style errors
 * and never takes the server down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { APIError } from 'openai';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from '../engine/engine.ts';
import type { EngineInfo, EngineStats } from '../api/stats.ts';
import type { ChatCompletionRequest } from '../api/openai-types.ts';
import type { ChatCompletionsApi, ChatEngine } from '../api/chat-engine.ts';
import { startOpenAIServer, type OpenAIServer } from './openai-server.ts';

const NAME = 'tiny-llama-gqa';
const messages = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Tell me a story about a cat.' },
];

let engine: Engine;
let server: OpenAIServer;
let client: OpenAI;

beforeAll(async () => {
  engine = await Engine.load(await testGpu(), modelRef(NAME), { kvPages: 64 });
  server = await startOpenAIServer(engine, { port: 0, servedModelName: NAME });
  client = clientOf(server);
});
afterAll(async () => {
  await server?.close();
  await engine?.destroy();
});

function clientOf(s: OpenAIServer): OpenAI {
  return new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
}

/** Our extensions (ignore_eos, kv_compression, request_id) ride along in the body, as a user's extra fields would. */
const extra = (fields: Partial<ChatCompletionRequest>) => fields as object;

async function streamText(params: Omit<OpenAI.ChatCompletionCreateParamsStreaming, 'stream' | 'model'>) {
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  for await (const chunk of await client.chat.completions.create({ model: NAME, ...params, stream: true })) chunks.push(chunk);
  return { text: chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), chunks, last: chunks.at(-1)! };
}

async function getJson(path: string, init?: RequestInit): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${server.url}${path}`, init);
  return { status: res.status, headers: res.headers, body: await res.json().catch(() => null) };
}

async function expectApiError(p: Promise<unknown>, status: number, code?: string, param?: string): Promise<APIError> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(APIError);
  const err = e as APIError;
  expect(err.status).toBe(status);
  expect(Object.keys(err.error as object).sort()).toEqual(['code', 'message', 'param', 'type']);
  if (code) expect(err.code).toBe(code);
  if (param) expect(err.param).toBe(param);
  return err;
}

function expectErrorBody(r: { status: number; body: any }, status: number, code: string): void {
  expect(r.status).toBe(status);
  expect(Object.keys(r.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(r.body.error.code).toBe(code);
  expect(r.body.error.type).toBe(status >= 500 ? 'server_error' : 'invalid_request_error');
  expect(r.body.error.message).toMatch(/\S/);
}

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 160 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
  expect(ok()).toBe(true);
}

async function untilIdle(): Promise<EngineStats> {
  for (let i = 0; i < 200; i++) {
    const s = (await getJson('/v1/stats')).body as EngineStats;
    if (s.requestsRunning === 0 && s.requestsWaiting === 0) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the engine did not become idle');
}

describe('completions over HTTP', () => {
  it('non-streaming = streamed text = the engine’s own chat.completions.create (greedy)', async () => {
    const direct = await engine.chat.completions.create({ messages, max_tokens: 24, temperature: 0 });
    const reply = await client.chat.completions.create({ model: NAME, messages, max_tokens: 24, temperature: 0 });
    expect(reply.object).toBe('chat.completion');
    expect(reply.model).toBe(NAME);
    expect(reply.choices[0].message).toMatchObject({ role: 'assistant', content: direct.choices[0].message.content });
    expect(reply.choices[0].message.content!.length).toBeGreaterThan(0);
    expect(reply.choices[0].finish_reason).toBe(direct.choices[0].finish_reason);
    expect(reply.usage).toMatchObject({ prompt_tokens: direct.usage.prompt_tokens, completion_tokens: direct.usage.completion_tokens });

    const streamed = await streamText({ messages, max_tokens: 24, temperature: 0, stream_options: { include_usage: true } });
    expect(streamed.text).toBe(direct.choices[0].message.content);
    expect(streamed.chunks[0].choices[0].delta.role).toBe('assistant');
    expect(streamed.chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === NAME && c.id === streamed.chunks[0].id)).toBe(true);
    expect(streamed.last.choices[0].finish_reason).toBe(direct.choices[0].finish_reason);
    expect(streamed.last.usage).toMatchObject({ completion_tokens: direct.usage.completion_tokens, total_tokens: direct.usage.total_tokens });

    // the engine's own id is a name for the model too; max_completion_tokens is max_tokens
    const short = await engine.chat.completions.create({ messages, max_tokens: 5, temperature: 0 });
    const alias = await client.chat.completions.create({ model: engine.modelId, messages, max_completion_tokens: 5, temperature: 0 });
    expect(alias.choices[0].message.content).toBe(short.choices[0].message.content);
    expect(alias.usage!.completion_tokens).toBe(short.usage.completion_tokens);
  });

  it('stop strings end the text as the engine ends it, streamed or not', async () => {
    const full = (await engine.chat.completions.create({ messages, max_tokens: 24, temperature: 0 })).choices[0].message.content;
    const stop = [...full].slice(6, 8).join(''); // whole characters from the middle
    const direct = await engine.chat.completions.create({ messages, max_tokens: 24, temperature: 0, stop: [stop] });
    expect(direct.choices[0].finish_reason).toBe('stop');
    expect(direct.choices[0].message.content.length).toBeLessThan(full.length);
    const reply = await client.chat.completions.create({ model: NAME, messages, max_tokens: 24, temperature: 0, stop });
    expect(reply.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: direct.choices[0].message.content } });
    const streamed = await streamText({ messages, max_tokens: 24, temperature: 0, stop: [stop] });
    expect([streamed.text, streamed.last.choices[0].finish_reason]).toEqual([direct.choices[0].message.content, 'stop']);
  });

  it('seed: the same seed at temperature 0.8 gives the same text twice; other seeds differ', async () => {
    const ask = (seed: number) => client.chat.completions.create({ model: NAME, messages, max_tokens: 16, temperature: 0.8, top_p: 0.95, seed }).then((r) => r.choices[0].message.content);
    const [a, b, c, d] = await Promise.all([ask(7), ask(7), ask(8), ask(9)]); // served concurrently, batched together
    expect(a).toBe(b);
    expect(a === c && a === d).toBe(false);
  });

  it('a client abort mid-stream aborts the request: the engine frees its pages', async () => {
    const before = engine.snapshot().requestsAborted;
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: NAME, messages, max_tokens: 400, temperature: 0, stream: true, ...extra({ ignore_eos: true }) },
      { signal: ac.signal },
    );
    let seen = 0;
    const reading = (async () => {
      for await (const _ of stream) if (++seen === 3) ac.abort();
    })();
    await reading; // the client's stream ends quietly on its own abort
    expect(seen).toBeGreaterThanOrEqual(3); // (chunks already received may still be handed out)
    const stats = await untilIdle();
    expect(stats.requestsAborted).toBe(before + 1);
    expect(stats.pool.pagesInUse).toBe(0);
    engine.checkInvariants();
  });

  it('a client that gives up on a non-streaming request aborts it too', async () => {
    const before = engine.snapshot().requestsAborted;
    const ac = new AbortController();
    const reply = client.chat.completions.create({ model: NAME, messages, max_tokens: 400, ...extra({ ignore_eos: true }) }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 300);
    await expect(reply).rejects.toThrow(/abort/i);
    const stats = await untilIdle();
    expect([stats.requestsAborted, stats.pool.pagesInUse]).toEqual([before + 1, 0]);
  });

  it('a client that leaves before the engine knows the request (prompt still being prepared) aborts it too', async () => {
    // an engine whose create() waits at a gate, as one preparing an image does: no request id is known to it yet
    let entered!: () => void;
    const inCreate = new Promise<void>((r) => (entered = r));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const gated: ChatEngine = {
      chat: { completions: { create: (async (req: ChatCompletionRequest) => (entered(), await gate, engine.chat.completions.create(req))) as ChatCompletionsApi['create'] } },
      abort: (id) => engine.abort(id),
      info: () => engine.info(),
    };
    const s = await startOpenAIServer(gated, { port: 0 });
    try {
      const before = engine.snapshot().requestsAborted;
      const ac = new AbortController();
      const reply = clientOf(s).chat.completions.create({ model: engine.modelId, messages, max_tokens: 400, ...extra({ ignore_eos: true }) }, { signal: ac.signal });
      await inCreate;
      ac.abort();
      await expect(reply).rejects.toThrow(/abort/i);
      await new Promise((r) => setTimeout(r, 50)); // the server sees the connection close
      open();
      await waitFor(() => engine.snapshot().requestsAborted > before);
      const stats = await untilIdle();
      expect([stats.requestsAborted, stats.pool.pagesInUse]).toEqual([before + 1, 0]);
    } finally {
      await s.close();
    }
  });

  it('a request_id already running is a 409; the first request is unharmed', async () => {
    const long = client.chat.completions.create({ model: NAME, messages, max_tokens: 40, temperature: 0, stream: true, ...extra({ request_id: 'dup', ignore_eos: true }) });
    const first = await long; // headers arrive with the first token: 'dup' is running
    await expectApiError(client.chat.completions.create({ model: NAME, messages, max_tokens: 4, ...extra({ request_id: 'dup' }) }), 409, 'request_id_in_use', 'request_id');
    let n = 0;
    for await (const c of first) n += c.choices[0]?.delta.content ? 1 : 0;
    expect(n).toBeGreaterThan(0);
    expect((await untilIdle()).pool.pagesInUse).toBe(0);
  });
});

describe('GET endpoints', () => {
  it('/v1/models, /v1/models/{id}, /health, /v1/info and /v1/stats', async () => {
    const info: EngineInfo = await engine.info();
    const models = await client.models.list();
    expect(models.data.map((m) => [m.id, m.object])).toEqual([[NAME, 'model']]);
    expect((await client.models.retrieve(NAME)).id).toBe(NAME);
    await expectApiError(client.models.retrieve('gpt-4o'), 404, 'model_not_found');
    expect((await getJson('/health')).body).toEqual({ status: 'ok', model: NAME });
    expect((await getJson('/v1/info')).body).toEqual(info);
    const { status, headers, body } = await getJson('/v1/stats');
    expect([status, headers.get('content-type')]).toEqual([200, 'application/json']);
    expect(Object.keys(body).sort()).toEqual(Object.keys(engine.snapshot()).sort());
    expect(body.pool.pagesTotal).toBe(64);
    expect(body.requestsFinished).toBeGreaterThan(0);
  });
});

describe('bad requests: OpenAI-style errors, and the server keeps serving', () => {
  const chat = (body: unknown, headers: Record<string, string> = { 'Content-Type': 'application/json' }) =>
    getJson('/v1/chat/completions', { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

  it('the client sees APIErrors with the status, code and param', async () => {
    const create = (body: object) => client.chat.completions.create({ model: NAME, messages, max_tokens: 4, ...body } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const unknown = await expectApiError(create({ model: 'gpt-4o' }), 404, 'model_not_found', 'model');
    expect(unknown.message).toContain(NAME); // says what the server has
    await expectApiError(create({ max_tokens: 'x' }), 400, 'invalid_value', 'max_tokens');
    await expectApiError(create({ messages: 5 }), 400, 'invalid_value', 'messages');
    await expectApiError(create({ messages: [] }), 400, 'invalid_value', 'messages');
    await expectApiError(create({ temperature: '0.5' }), 400, 'invalid_value', 'temperature');
    await expectApiError(create({ temperature: 5 }), 400, 'invalid_value', 'temperature'); // the engine's range check
    await expectApiError(create({ seed: 1.5 }), 400, 'invalid_value', 'seed');
    await expectApiError(create({ stop: 3 }), 400, 'invalid_value', 'stop');
    await expectApiError(create({ stream: 'yes' }), 400, 'invalid_value', 'stream');
    await expectApiError(create({ n: 2 }), 400, 'invalid_value', 'n');
    await expectApiError(create({ ...extra({ kv_compression: { press: 'snapkv', ratio: '0.5' } as never }) }), 400, 'invalid_value', 'kv_compression.ratio');
    await expectApiError(create({ ...extra({ kv_compression: { press: 'nope', ratio: 0.5 } }) }), 400, 'invalid_value', 'kv_compression');
    await expectApiError(create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }] }), 400, 'invalid_value', 'messages');
    const remote = create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://169.254.169.254/x.png' } }] }] });
    await expectApiError(remote, 400, 'invalid_value', 'messages[0].content[0].image_url.url');
    await expectApiError(client.completions.create({ model: NAME, prompt: 'hi' }), 404, 'unknown_url'); // no legacy completions
  });

  it('malformed JSON, a non-JSON type, other methods and unknown routes', async () => {
    expectErrorBody(await chat('{"messages": [', undefined), 400, 'invalid_json');
    expectErrorBody(await chat(''), 400, 'invalid_json');
    expectErrorBody(await chat('[1, 2]'), 400, 'invalid_value');
    expectErrorBody(await chat({ messages }, { 'Content-Type': 'text/plain' }), 415, 'unsupported_media_type');
    expectErrorBody(await chat({ messages }, {}), 415, 'unsupported_media_type');
    for (const [method, path] of [['GET', '/v1/chat/completions'], ['DELETE', '/v1/chat/completions'], ['POST', '/v1/models'], ['PUT', '/health']]) {
      const r = await getJson(path, { method });
      expectErrorBody(r, 405, 'method_not_allowed');
      expect(r.headers.get('allow')).toMatch(method === 'GET' || method === 'DELETE' ? /^POST\b/ : /^GET\b/);
    }
    expectErrorBody(await getJson('/v1/nope'), 404, 'unknown_url');
    expectErrorBody(await getJson('/'), 404, 'unknown_url');
    expect((await getJson('/health')).status).toBe(200);
    expect((await untilIdle()).pool.pagesInUse).toBe(0);
  });

  it('a body over the limit is a 413, declared or chunked, before it is read', async () => {
    const small = await startOpenAIServer(engine, { port: 0, maxBodyBytes: 4096 });
    try {
      const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2 ** 20) }] }); // 1 MiB
      const post = (body: BodyInit, init: object = {}) =>
        fetch(`${small.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, ...init }).then(async (r) => ({ status: r.status, body: await r.json() }));
      expectErrorBody(await post(big), 413, 'request_too_large');
      const chunked = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < 64; i++) c.enqueue(new TextEncoder().encode(big.slice(i * 16384, (i + 1) * 16384)));
          c.close();
        },
      });
      expectErrorBody(await post(chunked, { duplex: 'half' }), 413, 'request_too_large');
      const ok = await clientOf(small).chat.completions.create({ model: engine.modelId, messages, max_tokens: 2 });
      expect(ok.choices[0].message.role).toBe('assistant');
    } finally {
      await small.close();
    }
  });

  it('a stalled upload gets a 408 and its connection closed, not a hung request', async () => {
    const s = await startOpenAIServer(engine, { port: 0, requestTimeoutMs: 300 });
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const sock = connect(s.port, '127.0.0.1', () => sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mess'));
        let got = '';
        sock.on('data', (d) => (got += d));
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await s.close();
    }
  });
});

describe('engine failures', () => {
  /** A ChatEngine whose create() does what the test says (the model's info from the real engine). */
  const failing = (create: (req: ChatCompletionRequest) => Promise<unknown>): ChatEngine => ({
    chat: { completions: { create: create as ChatCompletionsApi['create'] } },
    abort: async () => false,
    info: () => engine.info(),
  });

  it('are 500 server_errors before anything streams, an error event after; no stats is a 404', async () => {
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const ch of await engine.chat.completions.create({ messages, max_tokens: 1, stream: true })) chunks.push(ch as OpenAI.ChatCompletionChunk);
    const chunk = chunks[0];
    const s = await startOpenAIServer(
      failing(async (req) => {
        if (req.max_tokens === 1) throw new Error('GPU device lost');
        return (async function* () {
          yield chunk;
          throw new Error('GPU device lost');
        })();
      }),
      { port: 0 },
    );
    try {
      const c = clientOf(s);
      const err = await expectApiError(c.chat.completions.create({ model: engine.modelId, messages, max_tokens: 1 }), 500);
      expect([err.type, err.message]).toEqual(['server_error', '500 the engine failed: GPU device lost']);
      await expectApiError(c.chat.completions.create({ model: engine.modelId, messages, max_tokens: 2 }), 500);
      const seen: string[] = [];
      const reading = (async () => {
        for await (const ch of await c.chat.completions.create({ model: engine.modelId, messages, max_tokens: 2, stream: true })) seen.push(ch.id);
      })();
      await expect(reading).rejects.toThrow(/GPU device lost/);
      expect(seen).toEqual([chunk.id]);
      expect((await fetch(`${s.url}/v1/stats`)).status).toBe(404);
      expect((await fetch(`${s.url}/health`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('CORS', () => {
  it('is off by default: no Access-Control headers, even on a preflight', async () => {
    const origin = { Origin: 'http://127.0.0.1:5173' };
    const r = await getJson('/health', { headers: origin });
    expect([...r.headers.keys()].filter((k) => k.startsWith('access-control'))).toEqual([]);
    const pre = await fetch(`${server.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { ...origin, 'Access-Control-Request-Method': 'POST' } });
    expect([...pre.headers.keys()].filter((k) => k.startsWith('access-control'))).toEqual([]);
  });

  it('with corsOrigin: exactly that origin, on answers, errors and the preflight', async () => {
    const origin = 'http://127.0.0.1:5173';
    const s = await startOpenAIServer(engine, { port: 0, corsOrigin: origin });
    try {
      const get = (path: string, init: RequestInit) => fetch(`${s.url}${path}`, init);
      expect((await get('/health', { headers: { Origin: origin } })).headers.get('access-control-allow-origin')).toBe(origin);
      expect((await get('/nope', { headers: { Origin: origin } })).headers.get('access-control-allow-origin')).toBe(origin);
      expect((await get('/health', { headers: { Origin: 'http://evil.example' } })).headers.get('access-control-allow-origin')).toBeNull();
      const pre = await get('/v1/chat/completions', {
        method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, authorization' },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
      expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
      expect(pre.headers.get('access-control-allow-headers')).toBe('content-type, authorization');
      const other = await get('/v1/chat/completions', { method: 'OPTIONS', headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await s.close();
    }
  });
});

describe('close()', () => {
  it('aborts the streams in flight and frees their pages', async () => {
    const s = await startOpenAIServer(engine, { port: 0 });
    const stream = await clientOf(s).chat.completions.create({ model: engine.modelId, messages, max_tokens: 400, stream: true, ...extra({ ignore_eos: true }) });
    const reading = (async () => {
      let last: OpenAI.ChatCompletionChunk | undefined;
      for await (const c of stream) last = c;
      return last?.choices[0]?.finish_reason;
    })();
    await new Promise((r) => setTimeout(r, 200));
    await s.close();
    expect(await reading).toBe('abort');
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });
});

describe('an image question (tiny-vlm-shapes, image as a data URL)', () => {
  let vlm: Engine;
  let vlmServer: OpenAIServer;
  beforeAll(async () => {
    vlm = await Engine.load(await testGpu(), modelRef('tiny-vlm-shapes'), { kvPages: 64 });
    vlmServer = await startOpenAIServer(vlm, { port: 0 });
  });
  afterAll(async () => {
    await vlmServer?.close();
    await vlm?.destroy();
  });

  it('is answered as the engine answers it, under the default body limit', async () => {
    const png = await readFile('public/models/tiny-vlm-shapes/testset/test_0000.png');
    const url = `data:image/png;base64,${png.toString('base64')}`;
    const ask = [{ role: 'user' as const, content: [{ type: 'image_url' as const, image_url: { url } }, { type: 'text' as const, text: 'What shape is the red object?' }] }];
    const direct = await vlm.chat.completions.create({ messages: ask, max_tokens: 16, temperature: 0 });
    const c = clientOf(vlmServer);
    const reply = await c.chat.completions.create({ model: vlm.modelId, messages: ask, max_tokens: 16, temperature: 0 });
    expect(reply.choices[0].message.content).toBe(direct.choices[0].message.content);
    expect(reply.choices[0].message.content).toMatch(/circle/); // items.json: test_0000's answer
    const chunks: string[] = [];
    for await (const ch of await c.chat.completions.create({ model: vlm.modelId, messages: ask, max_tokens: 16, temperature: 0, stream: true })) chunks.push(ch.choices[0]?.delta.content ?? '');
    expect(chunks.join('')).toBe(direct.choices[0].message.content);
    expect(vlm.snapshot().pool.pagesInUse).toBe(0);
  });
});
