/**
 * RemoteEngine against a fake server that answers the way vLLM does (no
 * GPU, no model): what goes over the wire (request_id kept client-side, our
 * extensions in the body, images as data URLs, include_usage, the key), how
 * vLLM's chunks come back (finish and usage chunks merged into one last chunk,
 * usage figures measured client-side), no /v1/info or /v1/stats (no `stats`),
 * aborts (the HTTP stream closes, the stream ends with 'abort') and errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RemoteEngine, RemoteError, remoteEngines } from './remote-engine.ts';
import type { ChatCompletionChunk } from '../api/openai-types.ts';

const MODEL = 'HuggingFaceTB/SmolVLM-256M-Instruct';
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

interface Seen { path: string; headers: IncomingMessage['headers']; body: Record<string, unknown> | null }
let server: Server;
let base: string;
let seen: Seen[] = [];
/** Resolves when the server sees the client close a stream it was still writing. */
let clientLeft: Promise<void>;
let leave: () => void;

const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
};
const chunk = (delta: object, finish: string | null = null) => ({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: MODEL, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
const sse = (res: ServerResponse, data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);

async function chat(res: ServerResponse, body: Record<string, unknown>): Promise<void> {
  const last = (body.messages as { content: unknown }[]).at(-1)!.content;
  const question = typeof last === 'string' ? last : '';
  if (body.temperature === 5) {
    return send(res, 400, { error: { message: 'temperature must be in [0, 2], got 5.0', type: 'BadRequestError', param: null, code: 400 } });
  }
  if (!body.stream) {
    return send(res, 200, {
      id: 'chatcmpl-y', object: 'chat.completion', created: 1, model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: 'a red circle' }, finish_reason: 'length', logprobs: null }],
      usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
    });
  }
  if (question === 'slow headers') await new Promise((r) => setTimeout(r, 400));
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  if (question === 'forever') { // streams until the client leaves
    res.on('close', () => leave());
    sse(res, chunk({ role: 'assistant', content: '' }));
    const timer = setInterval(() => sse(res, chunk({ content: 'la ' })), 20);
    res.on('close', () => clearInterval(timer));
    return;
  }
  sse(res, chunk({ role: 'assistant', content: '' }));
  for (const t of ['It ', 'is ', 'red.']) sse(res, chunk({ content: t }));
  sse(res, chunk({ content: '' }, 'stop'));
  sse(res, { id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: MODEL, choices: [], usage: { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23, prompt_tokens_details: { cached_tokens: 16 } } });
  res.end('data: [DONE]\n\n');
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const path = new URL(req.url!, 'http://x').pathname;
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : null;
      seen.push({ path, headers: req.headers, body });
      if (path === '/v1/models') return send(res, 200, { object: 'list', data: [{ id: MODEL, object: 'model', created: 1, owned_by: 'vllm', root: MODEL, max_model_len: 8192 }] });
      if (path === '/v1/chat/completions' && req.method === 'POST') return void chat(res, body!);
      send(res, 404, { detail: 'Not Found' }); // FastAPI's 404, as vLLM answers /v1/info and /v1/stats
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  seen = [];
  clientLeft = new Promise<void>((r) => (leave = r));
});

const posts = () => seen.filter((s) => s.path === '/v1/chat/completions');
async function all(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

describe('RemoteEngine on a vLLM-shaped server', () => {
  it('connects to the first model when none is named (a bare host:port gets /v1), has no stats, and says what it does not know', async () => {
    const engine = await RemoteEngine.create({ baseURL: base });
    expect(engine.model).toBe(MODEL);
    expect(engine.baseURL).toBe(`${base}/v1`);
    expect(engine.stats).toBeUndefined();
    const info = await engine.info();
    expect(info).toMatchObject({ modelId: MODEL, architecture: 'remote (vllm)', maxPositions: 8192, vision: true, parameters: 0, randomWeights: false });
    expect(info.remote).toEqual({ baseURL: `${base}/v1`, ownedBy: 'vllm', reportsInfo: false, reportsStats: false });
  });

  it('sends OpenAI’s body with our extensions (request_id stays here), images as data URLs, the key as a bearer token', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1`, model: MODEL, apiKey: 'sk-test' });
    const stream = await engine.chat.completions.create({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'image', image: new Blob([PNG]) }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, { type: 'text', text: 'What is it?' }] },
      ],
      stream: true, max_tokens: 8, temperature: 0, top_k: 5, ignore_eos: true, seed: 3, stop: ['\n'], request_id: 'mine-1',
      kv_compression: { press: 'snapkv', ratio: 0.5 },
    });
    await all(stream);
    const [{ body, headers }] = posts();
    expect(headers.authorization).toBe('Bearer sk-test');
    expect(body).not.toHaveProperty('request_id');
    expect(body).toMatchObject({
      model: MODEL, stream: true, stream_options: { include_usage: true }, max_tokens: 8, temperature: 0, top_k: 5, ignore_eos: true, seed: 3, stop: ['\n'],
      kv_compression: { press: 'snapkv', ratio: 0.5 },
    });
    const parts = (body!.messages as { content: { type: string; image_url?: { url: string } }[] }[])[1].content;
    expect(parts.map((p) => p.type)).toEqual(['image_url', 'image_url', 'text']);
    expect(parts[0].image_url!.url).toBe(`data:image/png;base64,${Buffer.from(PNG).toString('base64')}`); // type sniffed: the Blob had none
    expect(parts[1].image_url!.url).toBe('https://example.com/a.png');
  });

  it('streams chunks as the local engines do: role first, one last chunk with finish_reason and usage (extra measured here)', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1` });
    const chunks = await all(await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true, request_id: 'q' }));
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe('It is red.');
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.every((c) => c.id === 'q' && c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && !c.usage)).toBe(true);
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe('stop');
    expect(last.usage).toMatchObject({ prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 });
    const x = last.usage!.extra;
    expect(x.ttftMs).toBeGreaterThanOrEqual(0);
    expect(x.e2eMs).toBeGreaterThanOrEqual(x.ttftMs);
    expect([x.prefixHitTokens, x.promptTokens, x.completionTokens]).toEqual([16, 20, 3]);
    expect([x.queueDelayMs, x.prefillTtftMs, x.preemptions, x.evictedTokens].every(Number.isNaN)).toBe(true);
    expect(await engine.abort('q')).toBe(false); // finished: nothing left to abort
  });

  it('non-streaming: the completion, under our request id', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1` });
    const c = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], request_id: 'one' });
    expect(c).toMatchObject({ id: 'one', object: 'chat.completion', model: MODEL, choices: [{ message: { role: 'assistant', content: 'a red circle' }, finish_reason: 'length' }] });
    expect(c.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 3 });
    expect(posts()[0].body).toMatchObject({ stream: false });
  });

  it('abort mid-stream closes the HTTP stream and ends ours with finish_reason abort', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1` });
    const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'forever' }], stream: true, request_id: 'f' });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) {
      chunks.push(c);
      if (chunks.length === 3) expect(await engine.abort('f')).toBe(true);
    }
    await clientLeft; // the server saw the connection go
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('abort');
    expect(chunks.slice(0, -1).every((c) => c.choices[0].delta.content === 'la ')).toBe(true);
    expect(await engine.abort('f')).toBe(false);
  });

  it('leaving the loop early closes the stream too; an abort before the server answers gives an abort-only stream', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1` });
    for await (const _ of await engine.chat.completions.create({ messages: [{ role: 'user', content: 'forever' }], stream: true })) break;
    await clientLeft;

    const pending = engine.chat.completions.create({ messages: [{ role: 'user', content: 'slow headers' }], stream: true, request_id: 's' });
    await new Promise((r) => setTimeout(r, 50));
    expect(await engine.abort('s')).toBe(true);
    const chunks = await all(await pending);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].choices[0].finish_reason).toBe('abort');
  });

  it('errors carry the server’s message and status; an unknown model, an unreachable server and a bad URL say so', async () => {
    const engine = await RemoteEngine.create({ baseURL: `${base}/v1` });
    const bad = engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], temperature: 5, stream: true });
    await expect(bad).rejects.toThrow(/temperature must be in \[0, 2\], got 5\.0 \(HTTP 400 from http:/);
    await expect(bad).rejects.toBeInstanceOf(RemoteError);
    await expect(bad).rejects.toMatchObject({ status: 400 });

    await expect(RemoteEngine.create({ baseURL: base, model: 'nope' })).rejects.toThrow(`serves no model 'nope' (it serves: '${MODEL}')`);
    await expect(RemoteEngine.create({ baseURL: 'http://127.0.0.1:9' })).rejects.toThrow(/Could not reach the server at http:\/\/127\.0\.0\.1:9\/v1/);
    await expect(RemoteEngine.create({ baseURL: 'not a url' })).rejects.toThrow(/is not a URL/);
  });

  it('remoteEngines: a ChatEngineFactory over one server; a new load aborts the previous engine’s requests', async () => {
    const factory = remoteEngines({ baseURL: `${base}/v1` });
    const first = await factory(MODEL);
    const stream = await first.chat.completions.create({ messages: [{ role: 'user', content: 'forever' }], stream: true });
    const second = await factory('');
    expect(second).not.toBe(first);
    const chunks = await all(stream);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('abort');
  });
});
