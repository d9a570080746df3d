/**
 * Model sources in Node: urlSource / hubSource against a local HTTP server on 127.0.0.1
 * serving public/models, localFolderSource, and resolveSource.
 */
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from './loader.ts';
import { ReferenceModel } from './reference.ts';
import { hubSource, localFolderSource, resolveSource, urlSource, type FileProgress } from './source.ts';

const models = resolve('public/models');
let server: Server;
let base: string;

/**
 * GET/HEAD /models/<path>: the file, with content-length, sent in 64 KiB writes
 *   (/chunked/models/<path>: without content-length);
 * /hub/<org>/<name>/resolve/<rev>/<file>: files of public/models/<name>;
 * /spa/...: index.html with 200 for everything (like Vite's SPA fallback);
 * else 404.
 */
beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const chunked = url.pathname.startsWith('/chunked/');
      if (chunked) url.pathname = url.pathname.slice('/chunked'.length);
      let file: string | null = null;
      if (url.pathname.startsWith('/models/')) file = join(models, decodeURIComponent(url.pathname.slice('/models/'.length)));
      const hub = /^\/hub\/[^/]+\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
      if (hub && hub[2] === 'v1') file = join(models, hub[1], hub[3]);
      if (url.pathname.startsWith('/spa/')) {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>');
        return;
      }
      const st = file ? await stat(file).catch(() => null) : null;
      if (!file || !st?.isFile()) {
        res.writeHead(404, 'Not Found').end();
        return;
      }
      const body = await readFile(file);
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      if (!chunked) headers['content-length'] = String(body.length);
      res.writeHead(200, headers);
      if (req.method === 'HEAD') return void res.end();
      for (let i = 0; i < body.length; i += 65536) res.write(body.subarray(i, i + 65536));
      res.end();
    })();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((ok) => server.close(ok));
});

describe('urlSource', () => {
  it('streams a file with progress events and the exact bytes', async () => {
    const src = urlSource(`${base}/models/stories260K`);
    const events: FileProgress[] = [];
    const bytes = await src.readFile('model.safetensors', (p) => events.push(p));
    const want = await readFile(join(models, 'stories260K/model.safetensors'));
    expect(Buffer.from(bytes).equals(want)).toBe(true);
    expect(events.length).toBeGreaterThan(2);
    expect(events.every((e) => e.file === 'model.safetensors' && e.total === want.length)).toBe(true);
    expect(events[0].loaded).toBe(0);
    expect(events[events.length - 1].loaded).toBe(want.length);
    for (let i = 1; i < events.length; i++) expect(events[i].loaded).toBeGreaterThanOrEqual(events[i - 1].loaded);
  });

  it('reports total null without content-length', async () => {
    const events: FileProgress[] = [];
    const bytes = await urlSource(`${base}/chunked/models/stories260K`).readFile('model.safetensors', (p) => events.push(p));
    expect(Buffer.from(bytes).equals(await readFile(join(models, 'stories260K/model.safetensors')))).toBe(true);
    expect(events.length).toBeGreaterThan(2);
    expect(events.every((e) => e.total === null)).toBe(true);
    expect(events[events.length - 1].loaded).toBe(bytes.length);
  });

  it('names the file and the HTTP status on errors; has() tells', async () => {
    const src = urlSource(`${base}/models/stories260K`);
    await expect(src.readFile('nope.json')).rejects.toThrow(/cannot fetch model file "nope.json" from http:\/\/127.0.0.1:\d+\/models\/stories260K\/nope.json: HTTP 404 Not Found/);
    expect(await src.has('config.json')).toBe(true);
    expect(await src.has('nope.json')).toBe(false);
    const unreachable = urlSource('http://127.0.0.1:1/models/x');
    await expect(unreachable.readFile('config.json')).rejects.toThrow(/cannot fetch model file "config.json" from http:\/\/127.0.0.1:1\/models\/x\/config.json/);
  });

  it('treats an SPA fallback page as a missing file', async () => {
    const src = urlSource(`${base}/spa/models/x`);
    expect(await src.has('model.safetensors.index.json')).toBe(false);
    await expect(src.readFile('config.json')).rejects.toThrow(/HTTP 404 \(the server answered with an HTML page\)/);
  });

  it('loads whole models over HTTP (single file and sharded)', async () => {
    for (const name of ['tiny-llama-gqa', 'tiny-qwen2-sharded']) {
      const files = new Set<string>();
      const model = await loadModel(urlSource(`${base}/models/${name}`), { onProgress: (p) => files.add(p.file) });
      const local = await loadModel(localFolderSource(join(models, name)));
      expect(model.weights.get('model.norm.weight')!.data).toEqual(local.weights.get('model.norm.weight')!.data);
      expect(files.has('config.json')).toBe(true);
      const prompt = model.tokenizer.encode('One day');
      expect(new ReferenceModel(model.config, model.weights).greedy(prompt, 5)).toEqual(new ReferenceModel(local.config, local.weights).greedy(prompt, 5));
    }
  });
});

describe('hubSource', () => {
  it('reads <endpoint>/<repo>/resolve/<revision>/<file>', async () => {
    const src = hubSource('org/tiny-qwen2', { endpoint: `${base}/hub/`, revision: 'v1' });
    expect(src.id).toBe('hf:org/tiny-qwen2@v1');
    const cfg = JSON.parse(new TextDecoder().decode(await src.readFile('config.json'))) as { model_type: string };
    expect(cfg.model_type).toBe('qwen2');
    await expect(hubSource('org/tiny-qwen2', { endpoint: `${base}/hub` }).readFile('config.json')).rejects.toThrow(/resolve\/main\/config.json: HTTP 404/);
  });
});

describe('localFolderSource and resolveSource', () => {
  it('reads files, reports progress, refuses paths leaving the folder', async () => {
    const src = localFolderSource(join(models, 'stories260K'));
    const events: FileProgress[] = [];
    const bytes = await src.readFile('config.json', (p) => events.push(p));
    expect(events).toEqual([{ file: 'config.json', loaded: bytes.length, total: bytes.length }]);
    expect(await src.has('LICENSE')).toBe(true);
    expect(await src.has('missing.bin')).toBe(false);
    await expect(src.readFile('../tiny-qwen2/config.json')).rejects.toThrow(/leaves the folder/);
    await expect(src.readFile('missing.bin')).rejects.toThrow(/model file "missing.bin" not found in/);
  });

  it('resolves paths, URLs and repo ids', async () => {
    // In Node, "/models/x" means public/models/x when /models/x does not exist on disk.
    const web = resolveSource('/models/tiny-qwen2');
    expect(web.id).toBe('/models/tiny-qwen2');
    expect(await web.has('config.json')).toBe(true);
    expect(await resolveSource('./public/models/stories260K').has('LICENSE')).toBe(true);
    expect(await resolveSource(join(models, 'stories260K')).has('LICENSE')).toBe(true);
    await expect(resolveSource('/models/does-not-exist').readFile('config.json')).rejects.toThrow(/model folder not found/);
    expect(await resolveSource(`${base}/models/stories260K`).has('config.json')).toBe(true);
    expect(resolveSource('HuggingFaceTB/SmolVLM-256M-Instruct').id).toBe('hf:HuggingFaceTB/SmolVLM-256M-Instruct@main');
    const custom = localFolderSource(models);
    expect(resolveSource(custom)).toBe(custom);
    expect(() => resolveSource('not a model')).toThrow(/cannot resolve model reference "not a model"/);
  });
});

// Found by src/model/model-ref.fuzz.node.test.ts: each was accepted and then fetched the wrong
// URL, or crashed with a URIError, before sources checked their base and names.
describe('references refused before any fetch (fuzz regressions)', () => {
  const fetchNothing = () => Promise.reject(new Error('nothing may be fetched'));
  it.each<[string, () => unknown, RegExp]>([
    ['a base with a query swallows every file name', () => urlSource('https://h.example/m?v=1', { fetch: fetchNothing }), /has a query or fragment/],
    ['credentials in a base', () => urlSource('https://user:pw@h.example/m', { fetch: fetchNothing }), /has credentials in it/],
    ['a base that is not http(s)', () => urlSource('javascript:alert(1)/', { fetch: fetchNothing }), /is not http\(s\)/],
    ['"//host/x" is another host to a page', () => resolveSource('//evil.example/models/x'), /starts with two slashes/],
    ['an endpoint ending in a bare "#"', () => hubSource('org/name', { endpoint: 'https://hub.example#' }), /no credentials, query or fragment/],
    ['a revision with a lone surrogate (encodeURIComponent threw a URIError)', () => hubSource('org/name', { revision: '\ud800' }), /is not a branch, tag or commit/],
  ])('%s', (_, make, message) => {
    expect(make).toThrow(message);
  });

  it('a file name with a lone surrogate is refused by name, not by a URIError', async () => {
    const src = urlSource('https://h.example/m/', { fetch: fetchNothing, cache: false });
    await expect(src.readFile('model\ud800.safetensors')).rejects.toThrow(/lone surrogate/);
  });
});
