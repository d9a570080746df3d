/**
 * Downloads as they fail, against a local server in the Hugging Face Hub's URL
 * layout (/<org>/<name>/resolve/<revision>/<file>): a CDN redirect, a 404, a
 * body cut short, a stalled body, a 503 that passes on retry, a body whose
 * SHA-256 differs from the stated one; and cached copies checked before use
 * (a fake Cache: Node has no Cache Storage).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hubSource, hubEndpoint } from './source.ts';
import type { ModelFileCache } from './model-file-cache.ts';

const body = new TextEncoder().encode('{"hello": "world", "pad": "' + 'x'.repeat(200) + '"}');
const sha = createHash('sha256').update(body).digest('hex');
let server: Server;
let endpoint: string;
let flaky = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const file = (req.url ?? '').replace(/^\/org\/m\/resolve\/main\//, '');
    if (req.url?.startsWith('/cdn/')) return void res.writeHead(200, { 'content-length': body.length, 'x-linked-etag': `"${sha}"` }).end(body);
    if (file === 'redirect.json') return void res.writeHead(302, { location: '/cdn/redirect.json' }).end();
    if (file === 'short.json') {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 10));
      return void setTimeout(() => res.socket?.destroy(), 20);
    }
    if (file === 'stall.json') {
      res.writeHead(200, { 'content-length': body.length });
      return void res.write(body.subarray(0, 5)); // and nothing more
    }
    if (file === 'flaky.json') return void (flaky++ === 0 ? res.writeHead(503).end() : res.writeHead(200).end(body));
    if (file === 'bad-etag.json') return void res.writeHead(200, { etag: `"${'0'.repeat(64)}"` }).end(body);
    if (file === 'ok.json') return void res.writeHead(200, { 'content-length': body.length }).end(body);
    res.writeHead(404, 'Not Found').end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

function memoryCache(): ModelFileCache & { store: Map<string, Response> } {
  const store = new Map<string, Response>();
  return {
    store,
    match: async (u) => store.get(u)?.clone(),
    put: async (u, r) => void store.set(u, r),
    delete: async (u) => store.delete(u),
  };
}

const source = (cache: ModelFileCache | false = false) => hubSource('org/m', { endpoint, stallTimeoutMs: 300, cache });

describe('model downloads that fail', () => {
  it('follows a redirect and checks the stated SHA-256', async () => {
    expect(await source().readFile('redirect.json')).toEqual(body);
  });

  it('each failure is an Error naming the file and what happened', async () => {
    await expect(source().readFile('missing.json')).rejects.toThrow(/cannot fetch model file "missing.json" from .*HTTP 404/);
    await expect(source().readFile('short.json')).rejects.toThrow(/"short.json" .*(cut short: the body ended after 10 of \d+ bytes|broke off after 10 of \d+ bytes)/);
    await expect(source().readFile('stall.json')).rejects.toThrow(/"stall.json" .*stalled: no data for 300 ms after 5 bytes/);
    await expect(source().readFile('bad-etag.json')).rejects.toThrow(/"bad-etag.json" .*is corrupt: its SHA-256 is [0-9a-f]{64}, the server states 0{64}/);
  });

  it('a 503 is retried', async () => {
    expect(await source().readFile('flaky.json')).toEqual(body);
    expect(flaky).toBe(2);
  });

  it('a short body is never cached; a good one is, and is read back after a check', async () => {
    const cache = memoryCache();
    await expect(source(cache).readFile('short.json')).rejects.toThrow();
    expect(cache.store.size).toBe(0);
    expect(await source(cache).readFile('ok.json')).toEqual(body);
    expect(cache.store.size).toBe(1);
    expect(await source(cache).readFile('ok.json')).toEqual(body);
  });

  it('a damaged cached copy is deleted, named, and downloaded again', async () => {
    const cache = memoryCache();
    await source(cache).readFile('ok.json');
    const [url, good] = [...cache.store][0];
    const damaged = new Uint8Array(await good.clone().arrayBuffer());
    damaged[3] ^= 0xff;
    cache.store.set(url, new Response(damaged, { headers: good.headers }));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect(await source(cache).readFile('ok.json')).toEqual(body);
    expect(warn.mock.calls.flat().join(' ')).toMatch(/cached copy of model file "ok.json" .*has SHA-256 .*deleted, downloading it again/);
    cache.store.set(url, new Response(body.subarray(0, 20), { headers: good.headers })); // cut short
    expect(await source(cache).readFile('ok.json')).toEqual(body);
    expect(warn.mock.calls.flat().join(' ')).toMatch(/is 20 bytes, not the \d+ it was stored with/);
    warn.mockRestore();
  });

  it('the hub endpoint: HF_ENDPOINT in Node, validated', () => {
    vi.stubEnv('HF_ENDPOINT', endpoint);
    expect(hubEndpoint()).toBe(endpoint);
    vi.unstubAllEnvs();
    expect(hubEndpoint()).toBe('https://huggingface.co');
    expect(() => hubEndpoint('javascript:alert(1)')).toThrow(/plain http\(s\) URL/);
    expect(() => hubEndpoint('https://u:p@host')).toThrow(/no credentials/);
    expect(() => hubEndpoint('not a url')).toThrow(/is not a URL/);
  });
});
