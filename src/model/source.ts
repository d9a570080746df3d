/**
 * Where model files come from: a local folder (Node), a URL prefix (fetch, with streamed
 * progress and Cache Storage in browsers), or a Hugging Face repo.
 */

import { download, isHtmlFallback, type DownloadOptions } from './download.ts';
import { cacheStorage, readCached, storeCached, type ModelFileCache } from './model-file-cache.ts';

export interface FileProgress {
  file: string;
  loaded: number;
  /** Bytes expected, or null when the server does not say. */
  total: number | null;
}

export interface ModelSource {
  readonly id: string;
  readFile(path: string, onProgress?: (p: FileProgress) => void): Promise<Uint8Array>;
  has(path: string): Promise<boolean>;
}

/**
 * Why `file` is not a plain path inside a model's folder, or null when it is ("config.json",
 * "onnx/vision_encoder.onnx"). File names come from the model's own files (a sharded index's
 * weight_map), so they are untrusted: a ".." segment, a leading "/", a scheme or a drive
 * ("https:", "C:") or a backslash could reach outside the folder or URL base — fetch and
 * path.resolve normalize them, encodeURIComponent does not touch "..".
 */
export function unsafeFilePath(file: string): string | null {
  if (file === '') return 'is empty';
  if (/[\u0000-\u001f\u007f]/.test(file)) return 'contains a control character';
  // encodeURIComponent throws a URIError on these: refused here, as a name, not as a crash.
  if (LONE_SURROGATE.test(file)) return 'contains a lone surrogate (not valid Unicode)';
  if (file.includes('\\')) return 'contains a backslash';
  if (file.includes(':')) return 'contains ":" (a URL or a drive letter)';
  if (file.startsWith('/')) return 'is absolute';
  const segments = file.split('/');
  if (segments.includes('..')) return 'has a ".." segment';
  if (segments.some((s) => s === '' || s === '.')) return 'has an empty or "." segment';
  return null;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Cache Storage bucket for downloaded model files. */
export const MODEL_CACHE_NAME = 'fastcache-models';

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

// ---------------------------------------------------------------------------------------------
// Local folder (Node)
// ---------------------------------------------------------------------------------------------

type FsPromises = typeof import('node:fs/promises');
type NodePath = typeof import('node:path');

async function nodeModules(): Promise<{ fs: FsPromises; path: NodePath }> {
  // Variable specifiers keep browser bundles from trying to resolve node built-ins.
  const fsName = 'node:fs/promises';
  const pathName = 'node:path';
  const [fs, path] = await Promise.all([import(/* @vite-ignore */ fsName), import(/* @vite-ignore */ pathName)]);
  return { fs: fs as FsPromises, path: path as NodePath };
}

/** Files of a folder on disk (Node only). Paths are relative to the folder and may not leave it. */
export function localFolderSource(dir: string): ModelSource {
  const resolve = async (file: string) => {
    const { fs, path } = await nodeModules();
    const root = path.resolve(dir);
    const full = path.resolve(root, file);
    if (full !== root && !full.startsWith(root + path.sep)) throw new Error(`model file path "${file}" leaves the folder ${dir}`);
    return { fs, full };
  };
  return {
    id: dir,
    async readFile(file, onProgress) {
      const { fs, full } = await resolve(file);
      let data: Uint8Array;
      try {
        data = new Uint8Array(await fs.readFile(full));
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ENOENT') throw new Error(`model file "${file}" not found in ${dir}`);
        throw new Error(`cannot read model file "${file}" in ${dir}: ${(e as Error).message}`);
      }
      onProgress?.({ file, loaded: data.length, total: data.length });
      return data;
    },
    async has(file) {
      const { fs, full } = await resolve(file);
      try {
        return (await fs.stat(full)).isFile();
      } catch {
        return false;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// URL prefix (fetch)
// ---------------------------------------------------------------------------------------------

/**
 * Files under a URL prefix, fetched with streamed progress. In a browser with Cache Storage,
 * `cache: true` (the default) keeps every downloaded file in the 'fastcache-models' cache
 * and serves later reads from it. HTTP errors → Error naming the file, URL and status.
 *
 * A dev server's SPA fallback (Vite answers a missing file with index.html and 200) is
 * treated as "not found": an HTML response for a file that is not .html counts as missing.
 */
export interface UrlSourceOptions extends DownloadOptions {
  /** Keep downloads in Cache Storage (default true, where there is one), or in this cache. */
  cache?: boolean | ModelFileCache;
}

export function urlSource(baseUrl: string, opts: UrlSourceOptions = {}): ModelSource {
  const base = checkedBase(baseUrl);
  const cacheOf = (): Promise<ModelFileCache | null> =>
    typeof opts.cache === 'object' ? Promise.resolve(opts.cache) : opts.cache === false ? Promise.resolve(null) : cacheStorage(MODEL_CACHE_NAME);
  const urlOf = (file: string) => {
    const unsafe = unsafeFilePath(file);
    if (unsafe) throw new Error(`model file path ${JSON.stringify(file)} ${unsafe}: model files are named relative to ${base}, inside it`);
    return base + file.split('/').map(encodeURIComponent).join('/');
  };

  return {
    id: baseUrl,
    async readFile(file, onProgress) {
      const url = urlOf(file);
      const cache = await cacheOf();
      const cached = cache ? await readCached(cache, url, file) : null;
      if (cached) {
        onProgress?.({ file, loaded: cached.length, total: cached.length });
        return cached;
      }
      const got = await download(url, file, opts, onProgress);
      if (cache) await storeCached(cache, url, got.bytes, got.sha256, got.type);
      return got.bytes;
    },
    async has(file) {
      const url = urlOf(file);
      const cache = await cacheOf();
      if (cache && (await cache.match(url).catch(() => undefined))) return true;
      try {
        const res = await (opts.fetch ?? fetch)(url, { method: 'HEAD' });
        return res.ok && !isHtmlFallback(res, file);
      } catch {
        return false;
      }
    },
  };
}

/**
 * `baseUrl` normalized, ending in "/", so that base + file is that file inside it; an Error
 * naming the base when files could not be put under it. A "?" or "#" would swallow the file
 * names (every file the same request); credentials make fetch throw; a scheme other than
 * http(s), or one without a host ("https://" + "/config.json" is host config.json), is not a
 * folder of files. A relative base is left to fetch, which resolves it against the page.
 */
function checkedBase(baseUrl: string): string {
  const what = `model URL ${JSON.stringify(baseUrl)}`;
  const use = 'use the URL of the model\'s folder, like https://host/models/x, or a path like /models/x';
  if (/[?#]/.test(baseUrl)) throw new Error(`${what} has a query or fragment ("?", "#"), which the file names would be appended to: ${use}`);
  if (LONE_SURROGATE.test(baseUrl)) throw new Error(`${what} contains a lone surrogate (not valid Unicode): ${use}`);
  let url: URL;
  try {
    // The URL parser, not a regex, decides what is absolute: it drops tabs and newlines anywhere.
    url = new URL(baseUrl);
  } catch {
    // A relative base fails or carries credentials against any page the same way ("\\\\%" is a
    // host "%", "//u:p@host" has credentials): checked now, not left to a fetch error per file.
    const relative = /^[\u0000-\u0020]*[a-z][a-z\d+.\-\t\n\r]*:/i.test(baseUrl) || !URL.canParse(baseUrl, 'https://page.invalid/') ? null : new URL(baseUrl, 'https://page.invalid/');
    if (!relative) throw new Error(`${what} is not a valid URL: ${use}`);
    if (relative.username || relative.password) throw new Error(`${what} has credentials in it, which fetch refuses: ${use}, with the credentials in a header`);
    return baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  }
  if (!/^https?:$/.test(url.protocol)) throw new Error(`${what} is not http(s): ${use}`);
  if (url.username || url.password) throw new Error(`${what} has credentials in it, which fetch refuses: ${use}, with the credentials in a header`);
  return url.href.endsWith('/') ? url.href : url.href + '/';
}

/**
 * Where Hub repos are fetched from: `endpoint` if given, else (in Node) the
 * HF_ENDPOINT environment variable as huggingface_hub reads it, else
 * https://huggingface.co. Only an http(s) URL without credentials, query or fragment.
 */
export function hubEndpoint(endpoint?: string): string {
  const raw = endpoint ?? (isNode ? process.env.HF_ENDPOINT : undefined) ?? 'https://huggingface.co';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`Hugging Face endpoint ${JSON.stringify(raw)} is not a URL: give one like https://huggingface.co or http://127.0.0.1:8080`);
  }
  // A bare "?" or "#" leaves url.search / url.hash empty, but the repo path would still land in them.
  if (!/^https?:$/.test(url.protocol) || url.username || url.password || /[?#]/.test(raw)) {
    throw new Error(`Hugging Face endpoint ${JSON.stringify(raw)} must be a plain http(s) URL (no credentials, query or fragment): give one like https://huggingface.co or http://127.0.0.1:8080`);
  }
  // Normalized (whitespace trimmed, dot segments resolved), so `${endpoint}/${id}` is exactly the repo's URL.
  return url.href.replace(/\/+$/, '');
}

/** A Hugging Face Hub repo: https://huggingface.co/<id>/resolve/<revision>/<file>, cached. */
export function hubSource(repoId: string, opts: { revision?: string; endpoint?: string } & DownloadOptions & Pick<UrlSourceOptions, 'cache'> = {}): ModelSource {
  const endpoint = hubEndpoint(opts.endpoint);
  const revision = opts.revision ?? 'main';
  // The id goes into the URL unencoded (its "/" is part of the path): anything beyond the Hub's
  // own name characters ("..", "?", "#", "%") could point the requests at another repo or page.
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId) || repoId.split('/').some((s) => s === '.' || s === '..')) {
    throw new Error(`Hugging Face repo id ${JSON.stringify(repoId)} is not "name" or "org/name" (letters, digits, "-", "_", "."): give the id as the Hub shows it, like "HuggingFaceTB/SmolVLM-256M-Instruct"`);
  }
  // encodeURIComponent leaves "." and "..": a revision ".." would resolve above resolve/.
  if (revision === '' || revision === '.' || revision === '..' || LONE_SURROGATE.test(revision)) {
    throw new Error(`Hugging Face revision ${JSON.stringify(revision)} is not a branch, tag or commit: give one like "main", "v1.0" or a commit hash`);
  }
  const { revision: _r, endpoint: _e, ...download } = opts;
  const inner = urlSource(`${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/`, { cache: true, ...download });
  return { id: `hf:${repoId}@${revision}`, readFile: inner.readFile, has: inner.has };
}

// ---------------------------------------------------------------------------------------------
// resolveSource
// ---------------------------------------------------------------------------------------------

/**
 * A model reference → its source:
 * - a ModelSource → itself;
 * - an http(s) URL → urlSource (cached);
 * - a path ("/models/x", "./x", "../x"): in a browser a same-origin urlSource (not cached, so
 *   a regenerated model is never stale); in Node the folder on disk — the path itself if it
 *   exists, else (for "/x") `public/x` under the working directory, so a ref means the same
 *   model in a page and in a Node test;
 * - "org/name" → hubSource.
 */
export function resolveSource(ref: string | ModelSource, opts: { hubEndpoint?: string } = {}): ModelSource {
  if (typeof ref !== 'string') return ref;
  if (/^https?:\/\//i.test(ref)) return urlSource(ref);
  if (ref.startsWith('/') || ref.startsWith('./') || ref.startsWith('../')) {
    // A page reads "//host/x" and "/\\host/x" as another site's URL, not a path: refused in Node too, so a ref means the same everywhere.
    if (/^[/\\][/\\]/.test(ref)) {
      throw new Error(`model reference ${JSON.stringify(ref)} starts with two slashes, which a browser reads as another host: write https://host/path for a URL, or a path with one leading "/"`);
    }
    return isNode ? nodePathSource(ref) : urlSource(ref, { cache: false });
  }
  if (/^[\w.-]+\/[\w.-]+$/.test(ref)) return hubSource(ref, opts.hubEndpoint ? { endpoint: opts.hubEndpoint } : {});
  throw new Error(`cannot resolve model reference ${JSON.stringify(ref)}: use a path ("/models/x", "./x"), an http(s) URL, or a Hugging Face repo id ("org/name")`);
}

/** Node: the first existing folder among the candidates, decided on first use. */
function nodePathSource(ref: string): ModelSource {
  let chosen: Promise<ModelSource> | null = null;
  const pick = () =>
    (chosen ??= (async () => {
      const { fs, path } = await nodeModules();
      const candidates = [ref];
      if (ref.startsWith('/')) candidates.push(path.join(process.cwd(), 'public', ref));
      for (const dir of candidates) {
        const st = await fs.stat(dir).catch(() => null);
        if (st?.isDirectory()) return localFolderSource(dir);
      }
      throw new Error(`model folder not found: ${candidates.join(' or ')}`);
    })());
  return {
    id: ref,
    readFile: async (file, onProgress) => (await pick()).readFile(file, onProgress),
    has: async (file) => (await pick()).has(file),
  };
}
