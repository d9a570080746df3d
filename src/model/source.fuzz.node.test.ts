/**
 * Property-based fuzzing of the paths model files name (fast-check): a sharded index whose
 * weight_map points at "../", absolute paths, URLs, drive letters or backslashes is refused
 * with an error naming the entry, and nothing is read outside the model's folder or fetched
 * outside its URL base — checked with a fake ModelSource that records every file asked for,
 * with urlSource / hubSource over a fetch that records every URL, and with localFolderSource
 * on a temp folder that has a secret file beside it.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/source.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fuzzParams, rejected } from '../../test/fuzz.ts';
import { INDEX_FILE, loadModel } from './loader.ts';
import { hubSource, localFolderSource, unsafeFilePath, urlSource, type ModelSource } from './source.ts';

/** Path pieces that mean something to a URL parser, path.resolve or a file system. */
const segment = fc.oneof(
  fc.constantFrom('..', '.', '', '...', '.. ', ' ..', '%2e%2e', '%2E.', '..%2f..', '..\\..', '\\', 'C:', 'c:\\', 'https:', 'file:', 'evil.example', '~', '?q=1', '#x', '\u0000', '\t', '\n', '．．', 'model-00001-of-00002.safetensors', 'shards', 'a.safetensors'),
  fc.string({ maxLength: 6 }),
);
const pathArb = fc.oneof(
  fc.tuple(fc.constantFrom('', '/', '//', 'https://evil.example/', 'http:', 'file:///etc/', 'C:\\', '\\\\server\\share\\', './', '../'), fc.array(segment, { minLength: 1, maxLength: 5 })).map(([lead, segs]) => lead + segs.join('/')),
  fc.array(segment, { minLength: 1, maxLength: 5 }).map((segs) => segs.join('/')),
);
/** Names a shard may have, mixing plain ones, subfolders and hostile paths. */
const shardName = fc.oneof(
  fc.constantFrom('model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'shards/a.safetensors', 'missing.safetensors'),
  pathArb.map((p) => (p.endsWith('.safetensors') ? p : p + '.safetensors')),
  pathArb,
);

/** Files every model may have; anything else a load asks for must be a plain relative .safetensors path. */
const FIXED = new Set(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'chat_template.json', INDEX_FILE, 'model.safetensors']);

function allowed(file: string): boolean {
  return FIXED.has(file) || (unsafeFilePath(file) === null && file.endsWith('.safetensors'));
}

/** Is `url` (normalized the way fetch does) inside `base`? */
function inside(url: string, base: string, page = 'https://page.example/app/'): boolean {
  const b = new URL(base.endsWith('/') ? base : base + '/', page).href;
  return new URL(url, page).href.startsWith(b);
}

let files: Map<string, Uint8Array>;
let index: { weight_map: Record<string, string> };

beforeAll(async () => {
  const dir = resolve('public/models/tiny-qwen2-sharded');
  files = new Map();
  for (const f of await readdir(dir)) files.set(f, new Uint8Array(await readFile(join(dir, f))));
  files.set('shards/a.safetensors', files.get('model-00001-of-00002.safetensors')!);
  index = JSON.parse(new TextDecoder().decode(files.get(INDEX_FILE))) as typeof index;
});
afterEach(() => {
  vi.unstubAllGlobals();
});

/** The model's files in memory, with the given index; records every path asked for. */
function memorySource(indexJson: string): { source: ModelSource; asked: string[] } {
  const asked: string[] = [];
  const get = (f: string) => (f === INDEX_FILE ? new TextEncoder().encode(indexJson) : files.get(f));
  const source: ModelSource = {
    id: 'fuzz',
    readFile: async (f) => {
      asked.push(f);
      const b = get(f);
      if (!b) throw new Error(`model file "${f}" not found`);
      return b;
    },
    has: async (f) => {
      asked.push(f);
      return get(f) !== undefined;
    },
  };
  return { source, asked };
}

/** fetch over the model's files under `base`, recording every URL. */
function stubFetch(base: string, indexJson: string): string[] {
  const urls: string[] = [];
  vi.stubGlobal('fetch', async (input: string | URL) => {
    const url = String(input);
    urls.push(url);
    const rel = url.startsWith(base) ? url.slice(base.length).split('/').map(decodeURIComponent).join('/') : null;
    const body = rel === INDEX_FILE ? new TextEncoder().encode(indexJson) : rel !== null ? files.get(rel) : undefined;
    if (!body) return new Response(null, { status: 404, statusText: 'Not Found' });
    return new Response(body.slice(), { status: 200, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } });
  });
  return urls;
}

describe('source fuzz: a sharded index names only files inside the model', () => {
  it('weight_map entries with "../", absolute paths, URLs, drive letters or backslashes are refused, naming the entry; nothing outside is asked for', async () => {
    const edits = fc.array(fc.tuple(fc.nat(), shardName), { minLength: 1, maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(edits, fc.boolean(), async (changes, overHttp) => {
        const names = Object.keys(index.weight_map);
        const map = { ...index.weight_map };
        for (const [k, shard] of changes) map[names[k % names.length]] = shard;
        const json = JSON.stringify({ ...index, weight_map: map });
        const base = 'https://models.example/org/tiny/';
        const { source, asked } = memorySource(json);
        const urls = overHttp ? stubFetch(base, json) : [];
        const err = await rejected(() => loadModel(overHttp ? urlSource(base, { cache: false }) : source));

        const firstBad = Object.entries(map).find(([, f]) => unsafeFilePath(f) !== null || !f.endsWith('.safetensors'));
        if (firstBad) {
          const [name, f] = firstBad;
          expect(err?.message).toContain(`${INDEX_FILE} weight_map["${name}"] = ${JSON.stringify(f)} ${unsafeFilePath(f) ?? 'does not end in .safetensors'}; a shard must be`);
        }
        for (const f of asked) expect(allowed(f), `asked for ${JSON.stringify(f)}`).toBe(true);
        for (const u of urls) expect(inside(u, base), `fetched ${u}`).toBe(true);
        // Nothing read past the index when it is refused.
        if (firstBad) for (const f of asked) expect(f.endsWith('.safetensors') && f !== 'model.safetensors').toBe(false);
      }),
      fuzzParams(),
    );
  });

  it('an index whose weight_map is missing or not an object names the problem', async () => {
    const wm = fc.oneof(fc.constant(undefined), fc.jsonValue().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)));
    await fc.assert(
      fc.asyncProperty(wm, async (weightMap) => {
        const { source } = memorySource(JSON.stringify({ metadata: {}, weight_map: weightMap }));
        expect((await rejected(() => loadModel(source)))?.message).toBe(`model fuzz: ${INDEX_FILE} has no "weight_map" object`);
      }),
      fuzzParams(),
    );
  });
});

describe('source fuzz: urlSource and hubSource fetch only under their base', () => {
  it('urlSource: any path is refused with an Error naming it, or fetched under the base', async () => {
    const base = fc.constantFrom('https://models.example/org/m', 'https://models.example/org/m/', 'http://127.0.0.1:8080/models/x/', '/models/tiny', 'models/tiny/');
    await fc.assert(
      fc.asyncProperty(base, pathArb, fc.boolean(), async (b, path, viaHas) => {
        const urls = stubFetch('\u0000never', '{}');
        const src = urlSource(b, { cache: false });
        const err = await rejected(() => (viaHas ? src.has(path) : src.readFile(path)));
        const unsafe = unsafeFilePath(path);
        if (unsafe) {
          expect(err?.message).toBe(`model file path ${JSON.stringify(path)} ${unsafe}: model files are named relative to ${b.endsWith('/') ? b : b + '/'}, inside it`);
          expect(urls).toEqual([]);
        } else {
          expect(urls.length).toBe(1);
          expect(inside(urls[0], b), `fetched ${urls[0]}`).toBe(true);
          if (!viaHas) expect(err?.message).toMatch(/^cannot fetch model file /);
        }
      }),
      fuzzParams(),
    );
  });

  it('hubSource: a repo id or revision that could climb out of resolve/<revision>/ is refused; otherwise every URL is under it', async () => {
    const repo = fc.oneof(fc.constantFrom('org/name', 'gpt2', 'HuggingFaceTB/SmolVLM-256M-Instruct'), pathArb);
    const revision = fc.oneof(fc.constantFrom(undefined, 'main', 'v1.0', 'refs/pr/1', '..', '.', '', '../..', 'a/../..'), fc.string({ maxLength: 6 }));
    await fc.assert(
      fc.asyncProperty(repo, revision, pathArb, async (repoId, rev, path) => {
        const urls = stubFetch('\u0000never', '{}');
        let src: ModelSource;
        try {
          src = hubSource(repoId, { revision: rev, endpoint: 'https://hub.example' });
        } catch (e) {
          expect((e as Error).message).toMatch(/^Hugging Face (repo id .* is not "name" or "org\/name" |revision .* is not a branch, tag or commit: give one like )/s);
          return;
        }
        await rejected(() => src.readFile(path));
        const base = `https://hub.example/${repoId}/resolve/${encodeURIComponent(rev ?? 'main')}/`;
        for (const u of urls) {
          expect(inside(u, base), `fetched ${u}`).toBe(true);
          // …and the base itself is the repo's: no query, fragment or dot segment moved it.
          expect(new URL(u).pathname.startsWith(`/${repoId}/resolve/`), `fetched ${u}`).toBe(true);
        }
      }),
      fuzzParams(),
    );
  });
});

describe('source fuzz: localFolderSource reads only inside its folder', () => {
  let tmp: string;
  let root: string;
  const contents = new Map<string, string>([['config.json', 'inside:config'], ['sub/w.safetensors', 'inside:w'], ['a b/c.txt', 'inside:c']]);

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fastcache-fuzz-'));
    root = join(tmp, 'model');
    // Beside the folder: a secret, and a sibling whose name starts with the folder's (a prefix check without the separator would let it through).
    for (const [f, body] of [...contents].map(([f, b]) => [join('model', f), b]).concat([['secret.txt', 'SECRET'], [join('model-evil', 'config.json'), 'SECRET'], ['config.json', 'SECRET']])) {
      await mkdir(join(tmp, f, '..'), { recursive: true });
      await writeFile(join(tmp, f), body);
    }
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('any path reads a file of the folder, or fails with an Error; has() is true only for files inside', async () => {
    const local = fc.oneof(pathArb, fc.constantFrom('../secret.txt', '../model-evil/config.json', 'sub/../../secret.txt', '/etc/passwd', 'config.json', 'sub/w.safetensors', 'a b/c.txt', './config.json'));
    await fc.assert(
      fc.asyncProperty(local, fc.boolean(), async (raw, absolute) => {
        // Absolute paths that point at the secret, too.
        const path = absolute && raw.startsWith('../') ? join(root, raw) : raw;
        const src = localFolderSource(root);
        let bytes: Uint8Array | undefined;
        const err = await rejected(async () => (bytes = await src.readFile(path)));
        if (!err) expect([...contents.values()]).toContain(new TextDecoder().decode(bytes));
        else expect(err.message).toMatch(/^(model file path ".*" leaves the folder |model file ".*" not found in |cannot read model file ")/s);
        let has = false;
        const hasErr = await rejected(async () => (has = await src.has(path)));
        if (has) expect(resolve(root, path).startsWith(root + sep)).toBe(true);
        if (hasErr) expect(hasErr.message).toMatch(/leaves the folder/);
      }),
      fuzzParams(),
    );
  });
});
