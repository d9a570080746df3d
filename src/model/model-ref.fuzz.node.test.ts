/**
 * Property-based fuzzing of model references (fast-check): whatever string names a model —
 * an http(s) URL, a path, a Hub id, a Hub endpoint or revision — it is refused with a plain
 * Error naming it and saying what to use before anything is fetched, or accepted, and then
 * every URL fetched for any file the loader asks for is that file under the reference's own
 * base (same origin, no query or fragment, the base's path + the file). Checked on
 * resolveSource, urlSource, hubSource, hubEndpoint, loadModel and Engine.load's ref path
 * (which resolves and loads the files before it touches the GPU), with a fetch that records
 * every URL.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/model-ref.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fuzzParams, rejected, thrown } from '../../test/fuzz.ts';
import { Engine } from '../engine/engine.ts';
import type { Gpu } from '../gpu/context.ts';
import { INDEX_FILE, loadModel } from './loader.ts';
import { hubEndpoint, hubSource, resolveSource, urlSource, type ModelSource } from './source.ts';

const HUB = 'https://hub.example';
const PAGE = 'https://page.example/app/';

/** Every file a load may ask for: the fixed ones, shards, a subfolder, characters URLs escape. */
const FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', INDEX_FILE, 'model.safetensors', 'model-00001-of-00002.safetensors', 'shards/model-00002-of-00002.safetensors', 'a b+c%20&=.safetensors'];

// ---------------------------------------------------------------------------------------------
// Arbitraries: references built from pieces that mean something to a URL parser or a router
// ---------------------------------------------------------------------------------------------

const scheme = fc.constantFrom('https://', 'http://', 'HTTPS://', 'https:', 'https:/', 'https:///', 'http:\\\\', '//', '/\\', '\\\\', '/', './', '../', '', 'javascript:', 'data:', 'data:text/html,', 'file://', 'file:///', 'blob:', 'blob:https://page.example/', 'ftp://', 'hf://', ' https://', 'https ://', 'ws://');
const host = fc.constantFrom('models.example', 'user:pw@models.example', 'user@models.example', ':pw@models.example', 'models.example:8080', 'models.example:0', 'models.example:99999', '[::1]:8080', '[::1]', '[::1', '127.0.0.1', '0x7f.1', 'ｍodels.example', 'models.example.', 'models.example\\evil.example', 'evil.example#@models.example', 'evil.example?@models.example', '', '%', '%2e', 'org', 'HuggingFaceTB', '-', '...');
const segment = fc.oneof(
  fc.constantFrom('..', '.', '', '...', '%2e%2e', '%2E.', '..%2f', '..%2F..', '..\\', '\\', '?', '?x=1', '#', '#frag', '%', '%zz', '%00', 'name', 'm', 'tiny', 'resolve', 'main', ' ', ' m', 'm ', '\t', '\n', '\u00a0', '\u3000', '．．', '\u2024\u2024', '\u2215', '\uff0f', 'Ｏrg', 'a b', 'alert(1)', '@', 'C:', '\u0000', '\ud800', 'x'.repeat(300)),
  fc.string({ maxLength: 5 }),
);
const pathPart = fc.array(segment, { maxLength: 5 }).map((s) => s.join('/'));
const urlish = fc.tuple(scheme, host, fc.constantFrom('', '/'), pathPart).map(([s, h, slash, p]) => s + h + slash + p);
const hubish = fc.tuple(segment, fc.constantFrom('/', '//', '\\', ''), segment).map(([a, sep, b]) => a + sep + b);
const long = fc
  .tuple(fc.constantFrom('org/', 'https://models.example/', '/models/', ''), fc.integer({ min: 1_000, max: 20_000 }), fc.constantFrom('a', '../', '%2e%2e/', '/', '?'))
  .map(([p, n, r]) => p + r.repeat(Math.ceil(n / r.length)));
const curated = fc.constantFrom(
  '', ' ', 'org/name', 'gpt2', 'org/name?x', 'org/name#x', 'org/../x', 'org/..', '../x', '..%2fx', 'org%2fname', 'org\\name', 'org/name/extra', ' org/name', 'org/name\n',
  'https://user:pw@models.example/m', 'https://models.example/m?token=1', 'https://models.example/m#x', 'https://models.example/m/?', 'https://models.example/m#', 'https://', 'https:///evil.example/m',
  'http://[::1]:8080/m', 'https://models.example:8443/m/', 'javascript:alert(1)', 'data:text/plain,hi', 'file:///etc/passwd', 'blob:https://page.example/1234', '//evil.example/m', '/\\evil.example/m', '/models/tiny', './models/x',
);
/** Refs most of which should be accepted, so the "accepted" half of each property runs often too. */
const plausible = fc.oneof(
  fc.tuple(fc.constantFrom('https://', 'http://', 'HTTPS://', 'https:///'), fc.constantFrom('models.example', 'models.example:8080', '[::1]:8080', '127.0.0.1', 'ｍodels.example', 'models.example.'), pathPart).map(([s, h, p]) => `${s}${h}/${p}`),
  fc.stringMatching(/^[\w.-]{1,12}\/[\w.-]{1,12}$/),
);
const refArb = fc.oneof(plausible, urlish, hubish, curated, long, fc.string({ unit: 'binary', maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 12 }));

// ---------------------------------------------------------------------------------------------
// The oracle: where a reference's files may be fetched from
// ---------------------------------------------------------------------------------------------

/** Encoded the way a URL path holds a file name. */
const encodedFile = (file: string) => file.split('/').map(encodeURIComponent).join('/');

/** The normalized base of an accepted reference (ends in "/"); null when it reads the disk (a path, in Node). */
function baseOf(ref: string): URL | null {
  if (/^https?:\/\//i.test(ref)) {
    const u = new URL(ref);
    return new URL(u.href.endsWith('/') ? u.href : u.href + '/');
  }
  if (ref.startsWith('/') || ref.startsWith('./') || ref.startsWith('../')) return null;
  return new URL(`${HUB}/${ref}/resolve/main/`);
}

/** Is `fetched` (as passed to fetch) exactly `file` under `base`? Reasons it is not, or null. */
function outside(fetched: string, base: URL, file: string): string | null {
  // fetch drops a fragment: two files would be one request.
  if (fetched.includes('#')) return 'has a fragment';
  const u = new URL(fetched, PAGE);
  if (u.origin !== base.origin) return `origin ${u.origin}, not ${base.origin}`;
  if (u.username || u.password) return 'carries credentials';
  if (u.search) return `has a query ${u.search}`;
  if (u.pathname !== base.pathname + encodedFile(file)) return `path ${u.pathname}, not ${base.pathname}${encodedFile(file)}`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// A recording fetch (the tiny sharded model's files under `serveUnder`, else 404)
// ---------------------------------------------------------------------------------------------

let model: Map<string, Uint8Array>;

beforeAll(async () => {
  const dir = resolve('public/models/tiny-qwen2-sharded');
  model = new Map();
  for (const f of await readdir(dir)) model.set(f, new Uint8Array(await readFile(join(dir, f))));
});
afterEach(() => {
  vi.unstubAllGlobals();
  vi.unstubAllEnvs();
});

interface Recorder {
  fetch: typeof fetch;
  urls: string[];
  /** Serve the model's files under this base from now on. */
  serveUnder: URL | null;
}

function recorder(): Recorder {
  const r: Recorder = {
    urls: [],
    serveUnder: null,
    fetch: async (input: RequestInfo | URL) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      r.urls.push(url);
      const base = r.serveUnder;
      const u = URL.canParse(url, PAGE) ? new URL(url, PAGE) : null;
      const rel = base && u && u.origin === base.origin && !u.search && u.pathname.startsWith(base.pathname) ? decodeURIComponent(u.pathname.slice(base.pathname.length)) : null;
      const body = rel !== null ? model.get(rel) : undefined;
      if (!body) return new Response(null, { status: 404, statusText: 'Not Found' });
      return new Response(body.slice(), { status: 200, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } });
    },
  };
  return r;
}

/** Asks `source` for every file of FILES (has and readFile); what was fetched, per file. */
async function askAll(source: ModelSource, rec: Recorder): Promise<Array<[string, string]>> {
  const seen: Array<[string, string]> = [];
  for (const file of FILES) {
    for (const ask of [() => source.has(file), () => source.readFile(file)]) {
      const before = rec.urls.length;
      await rejected(ask); // a plain Error (404) is fine; a TypeError fails the property
      for (const u of rec.urls.slice(before)) seen.push([file, u]);
    }
  }
  return seen;
}

const USE = /use |give |write |named? /;

describe('model-ref fuzz: resolveSource', () => {
  it('a reference is refused naming it and what to use, with no fetch; or every file is fetched exactly under its base', async () => {
    await fc.assert(
      fc.asyncProperty(refArb, async (ref) => {
        const rec = recorder();
        vi.stubGlobal('fetch', rec.fetch);
        const err = thrown(() => resolveSource(ref, { hubEndpoint: HUB }));
        if (err) {
          expect(err.message).toContain(JSON.stringify(ref));
          expect(err.message).toMatch(USE);
          expect(rec.urls).toEqual([]);
          return;
        }
        const source = resolveSource(ref, { hubEndpoint: HUB });
        const base = baseOf(ref);
        const fetched = await askAll(source, rec);
        if (!base) return void expect(fetched, 'a path in Node reads the disk').toEqual([]);
        expect(base.username + base.password, 'credentials accepted').toBe('');
        for (const [file, u] of fetched) expect(outside(u, base, file), `${file} → ${u}`).toBeNull();
      }),
      fuzzParams(),
    );
  });

  it('an accepted URL or Hub reference loads the model served under its base, fetching nothing else', async () => {
    const remote = refArb.filter((r) => !(r.startsWith('/') || r.startsWith('./') || r.startsWith('../')));
    await fc.assert(
      fc.asyncProperty(remote, async (ref) => {
        const rec = recorder();
        vi.stubGlobal('fetch', rec.fetch);
        if (thrown(() => resolveSource(ref, { hubEndpoint: HUB }))) return void expect(rec.urls).toEqual([]);
        const base = baseOf(ref)!;
        rec.serveUnder = base;
        const files: string[] = [];
        const loaded = await loadModel(resolveSource(ref, { hubEndpoint: HUB }), { onProgress: (p) => void (files.includes(p.file) || files.push(p.file)) });
        expect(loaded.weights.size).toBeGreaterThan(0);
        for (const u of rec.urls) {
          const rel = decodeURIComponent(new URL(u, PAGE).pathname.slice(base.pathname.length));
          expect(outside(u, base, rel), u).toBeNull();
        }
        expect(files).toContain('model-00002-of-00002.safetensors');
      }),
      fuzzParams(),
    );
  });
});

describe('model-ref fuzz: Engine.load', () => {
  // Engine.load resolves the ref and reads every file before it uses the GPU: a failed
  // download (404 here) ends it there, so a stand-in GPU that is never touched is enough.
  const noGpu = Object.create(null) as Gpu;

  it('a refused reference rejects with the message and fetches nothing; an accepted one fetches config.json under its base only', async () => {
    await fc.assert(
      fc.asyncProperty(refArb, async (ref) => {
        const rec = recorder();
        vi.stubGlobal('fetch', rec.fetch);
        const err = await rejected(() => Engine.load(noGpu, ref, { hubEndpoint: HUB }));
        expect(err, 'nothing is served: the load must fail').not.toBeNull();
        const base = thrown(() => resolveSource(ref, { hubEndpoint: HUB })) ? undefined : baseOf(ref);
        if (base === undefined) {
          expect(err!.message).toContain(JSON.stringify(ref));
          return void expect(rec.urls).toEqual([]);
        }
        if (base === null) return void expect(rec.urls).toEqual([]);
        expect(err!.message).toMatch(/cannot fetch model file "config.json" from .*HTTP 404/s);
        expect(rec.urls.length).toBe(1);
        expect(outside(rec.urls[0], base, 'config.json'), rec.urls[0]).toBeNull();
      }),
      fuzzParams(),
    );
  });
});

describe('model-ref fuzz: urlSource', () => {
  it('any base is refused with no fetch, or every file is fetched exactly under it; hostile file names never reach fetch', async () => {
    const base = fc.oneof(urlish, curated, fc.string({ unit: 'binary', maxLength: 20 }));
    const file = fc.oneof(fc.constantFrom(...FILES), pathPart, fc.string({ unit: 'binary', maxLength: 12 }));
    await fc.assert(
      fc.asyncProperty(base, file, async (b, f) => {
        const rec = recorder();
        const err = thrown(() => urlSource(b, { cache: false, fetch: rec.fetch }));
        if (err) {
          expect(err.message).toContain(JSON.stringify(b));
          expect(err.message).toMatch(USE);
          return void expect(rec.urls).toEqual([]);
        }
        const source = urlSource(b, { cache: false, fetch: rec.fetch });
        // Absolute when it parses alone: "https:/host" beside an https page would be a path.
        const abs = URL.canParse(b) ? new URL(b).href : b;
        const normalized = new URL(abs.endsWith('/') ? abs : abs + '/', PAGE);
        const fetched = await askAll(source, rec);
        const before = rec.urls.length;
        const fileErr = await rejected(() => source.readFile(f));
        if (rec.urls.length > before) fetched.push([f, rec.urls[before]]);
        else expect(fileErr?.message).toMatch(/^model file path .* model files are named relative to /s);
        for (const [name, u] of fetched) expect(outside(u, normalized, name), `${name} → ${u}`).toBeNull();
      }),
      fuzzParams(),
    );
  });
});

describe('model-ref fuzz: hubSource', () => {
  const idArb = fc.oneof(fc.stringMatching(/^[\w.-]{1,10}(\/[\w.-]{1,10})?$/), hubish, curated, fc.string({ unit: 'binary', maxLength: 16 }));
  const revisionArb = fc.oneof(
    fc.constantFrom(undefined, 'main', 'v1.0', 'refs/pr/1', 'refs/heads/main', '..', '.', '', '../..', 'a/../..', '../../evil', '?x=1', '#x', '%2e%2e', '%2F', '\\..', '..\\', 'main ', ' ', '\n', '\ud800', '\udc00x', 'é', '..%00'),
    fc.string({ unit: 'binary', maxLength: 10 }),
    pathPart,
  );

  it('an accepted id and revision fetch exactly <endpoint>/<id>/resolve/<encoded revision>/<file>; the rest are refused with no fetch', async () => {
    await fc.assert(
      fc.asyncProperty(idArb, revisionArb, async (id, revision) => {
        const rec = recorder();
        const err = thrown(() => hubSource(id, { endpoint: HUB, fetch: rec.fetch, cache: false, ...(revision === undefined ? {} : { revision }) }));
        if (err) {
          expect(err.message).toMatch(/^Hugging Face (repo id .* is not "name" or "org\/name" |revision .* is not a branch, tag or commit)/s);
          return void expect(rec.urls).toEqual([]);
        }
        expect(/^[\w.-]+(\/[\w.-]+)?$/.test(id) && !id.split('/').some((s) => s === '.' || s === '..'), `accepted id ${JSON.stringify(id)}`).toBe(true);
        const source = hubSource(id, { endpoint: HUB, fetch: rec.fetch, cache: false, ...(revision === undefined ? {} : { revision }) });
        const rev = encodeURIComponent(revision ?? 'main');
        const base = new URL(`${HUB}/${id}/resolve/${rev}/`);
        expect(base.pathname, 'the revision stays one segment under resolve/').toBe(`/${id}/resolve/${rev}/`);
        for (const [file, u] of await askAll(source, rec)) {
          expect(u).toBe(`${HUB}/${id}/resolve/${rev}/${encodedFile(file)}`);
          expect(outside(u, base, file), u).toBeNull();
        }
      }),
      fuzzParams(),
    );
  });
});

describe('model-ref fuzz: hubEndpoint', () => {
  const endpointArb = fc.oneof(
    urlish,
    fc.webUrl({ withQueryParameters: true, withFragments: true, validSchemes: ['http', 'https', 'ftp', 'javascript', 'file'] }),
    fc.tuple(fc.constantFrom('https://hub.example', 'http://127.0.0.1:8080', 'http://[::1]:8080/mirror'), fc.constantFrom('', '/', '///', '?', '#', '/?', '/#', ' ', '\n', '/a/..', '/%2e%2e/', '\\', '/hf/', ':', '@')).map(([a, b]) => a + b),
    fc.string({ unit: 'binary', maxLength: 20 }),
  );

  it('an endpoint is a plain http(s) URL returned without trailing slashes, or refused with the message; hubSource then fetches only under it', async () => {
    await fc.assert(
      fc.asyncProperty(endpointArb, async (raw) => {
        const rec = recorder();
        const err = thrown(() => hubEndpoint(raw));
        const hub = () => hubSource('org/m', { endpoint: raw, fetch: rec.fetch, cache: false });
        if (err) {
          expect(err.message).toMatch(/^Hugging Face endpoint .* (is not a URL: give one like https:\/\/huggingface\.co|must be a plain http\(s\) URL .*: give one like )/s);
          expect(err.message).toContain(JSON.stringify(raw));
          expect(thrown(hub)?.message).toBe(err.message);
          return void expect(rec.urls).toEqual([]);
        }
        const endpoint = hubEndpoint(raw);
        const u = new URL(endpoint);
        expect(endpoint).toMatch(/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/);
        expect(endpoint.endsWith('/')).toBe(false);
        expect(u.username + u.password + u.search + u.hash).toBe('');
        expect(u.origin).toBe(new URL(raw).origin);
        const base = new URL(`${endpoint}/org/m/resolve/main/`);
        expect(base.pathname).toBe(`${u.pathname.replace(/\/+$/, '')}/org/m/resolve/main/`);
        for (const [file, fetched] of await askAll(hub(), rec)) {
          expect(fetched).toBe(`${endpoint}/org/m/resolve/main/${encodedFile(file)}`);
          expect(outside(fetched, base, file), fetched).toBeNull();
        }
      }),
      fuzzParams(),
    );
  });

  it('HF_ENDPOINT is checked the same way', async () => {
    await fc.assert(
      // The environment holds only well-formed text without NUL (Node replaces or refuses the rest).
      fc.asyncProperty(endpointArb.filter((r) => !/[\u0000\ud800-\udfff]/.test(r)), async (raw) => {
        vi.stubEnv('HF_ENDPOINT', raw);
        const fromEnv = thrown(() => hubEndpoint());
        const given = thrown(() => hubEndpoint(raw));
        expect(fromEnv?.message).toBe(given?.message);
        if (!given) expect(hubEndpoint()).toBe(hubEndpoint(raw));
      }),
      fuzzParams(),
    );
  });
});
