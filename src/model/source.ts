/**
 * Where model files come from: a local folder (Node), a URL prefix (fetch, with streamed
 * progress and Cache Storage in browsers), or a Hugging Face repo.
 */

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
  if (file.includes('\\')) return 'contains a backslash';
  if (file.includes(':')) return 'contains ":" (a URL or a drive letter)';
  if (file.startsWith('/')) return 'is absolute';
  const segments = file.split('/');
  if (segments.includes('..')) return 'has a ".." segment';
  if (segments.some((s) => s === '' || s === '.')) return 'has an empty or "." segment';
  return null;
}

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
export function urlSource(baseUrl: string, opts: { cache?: boolean } = {}): ModelSource {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const useCache = (opts.cache ?? true) && typeof caches !== 'undefined';
  const urlOf = (file: string) => {
    const unsafe = unsafeFilePath(file);
    if (unsafe) throw new Error(`model file path ${JSON.stringify(file)} ${unsafe}: model files are named relative to ${base}, inside it`);
    return base + file.split('/').map(encodeURIComponent).join('/');
  };

  return {
    id: baseUrl,
    async readFile(file, onProgress) {
      const url = urlOf(file);
      const cache = useCache ? await openCache() : null;
      const cached = await cache?.match(url);
      if (cached) return readBody(cached, file, url, onProgress);
      let res: Response;
      try {
        res = await fetch(url);
      } catch (e) {
        throw new Error(`cannot fetch model file "${file}" from ${url}: ${(e as Error).message}`);
      }
      if (!res.ok) throw new Error(`cannot fetch model file "${file}" from ${url}: HTTP ${res.status} ${res.statusText}`.trim());
      if (isHtmlFallback(res, file)) throw new Error(`cannot fetch model file "${file}" from ${url}: HTTP 404 (the server answered with an HTML page)`);
      const bytes = await readBody(res, file, url, onProgress);
      if (cache) {
        const headers = { 'content-type': res.headers.get('content-type') ?? 'application/octet-stream', 'content-length': String(bytes.length) };
        await cache.put(url, new Response(bytes.slice().buffer, { headers })).catch((e: unknown) => {
          console.warn(`fastcache: could not cache ${url}: ${(e as Error).message}`);
        });
      }
      return bytes;
    },
    async has(file) {
      const url = urlOf(file);
      if (useCache && (await (await openCache())?.match(url))) return true;
      try {
        const res = await fetch(url, { method: 'HEAD' });
        return res.ok && !isHtmlFallback(res, file);
      } catch {
        return false;
      }
    },
  };
}

/** A Hugging Face Hub repo: https://huggingface.co/<id>/resolve/<revision>/<file>, cached. */
export function hubSource(repoId: string, opts: { revision?: string; endpoint?: string } = {}): ModelSource {
  const endpoint = (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  // The id goes into the URL unencoded (its "/" is part of the path): anything beyond the Hub's
  // own name characters ("..", "?", "#", "%") could point the requests at another repo or page.
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId) || repoId.split('/').some((s) => s === '.' || s === '..')) {
    throw new Error(`Hugging Face repo id ${JSON.stringify(repoId)} is not "name" or "org/name" (letters, digits, "-", "_", ".")`);
  }
  // encodeURIComponent leaves "." and "..": a revision ".." would resolve above resolve/.
  if (revision === '' || revision === '.' || revision === '..') throw new Error(`Hugging Face revision ${JSON.stringify(revision)} is not a branch, tag or commit`);
  const inner = urlSource(`${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/`, { cache: true });
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
export function resolveSource(ref: string | ModelSource): ModelSource {
  if (typeof ref !== 'string') return ref;
  if (/^https?:\/\//i.test(ref)) return urlSource(ref);
  if (ref.startsWith('/') || ref.startsWith('./') || ref.startsWith('../')) {
    return isNode ? nodePathSource(ref) : urlSource(ref, { cache: false });
  }
  if (/^[\w.-]+\/[\w.-]+$/.test(ref)) return hubSource(ref);
  throw new Error(`cannot resolve model reference "${ref}": use a path ("/models/x", "./x"), an http(s) URL, or a Hugging Face repo id ("org/name")`);
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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async function openCache(): Promise<Cache | null> {
  try {
    return await caches.open(MODEL_CACHE_NAME);
  } catch {
    return null; // e.g. opaque origins or storage disabled
  }
}

function isHtmlFallback(res: Response, file: string): boolean {
  return (res.headers.get('content-type') ?? '').startsWith('text/html') && !/\.html?$/i.test(file);
}

/** Read a response body chunk by chunk, reporting progress. */
async function readBody(res: Response, file: string, url: string, onProgress?: (p: FileProgress) => void): Promise<Uint8Array> {
  const encoded = res.headers.get('content-encoding');
  const lengthHeader = res.headers.get('content-length');
  // With a content-encoding, content-length counts compressed bytes: not the body we read.
  const total = lengthHeader !== null && !encoded && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  if (!res.body) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    onProgress?.({ file, loaded: bytes.length, total: total ?? bytes.length });
    return bytes;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  onProgress?.({ file, loaded: 0, total });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.({ file, loaded, total });
  }
  if (total !== null && loaded !== total) {
    throw new Error(`download of "${file}" from ${url} truncated: expected ${total} bytes, got ${loaded}`);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(loaded);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}
