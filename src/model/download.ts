/**
 * One model file over HTTP, as downloads really fail. The server may redirect
 * (the Hub sends LFS files to a CDN; fetch follows). A 5xx or a dropped
 * connection is retried. A body that stops arriving is given up after
 * `stallTimeoutMs` without data, rather than hanging the load. A body shorter
 * than its Content-Length is refused. A body whose SHA-256 differs from the
 * one the Hub states (`x-linked-etag` / `etag` of LFS files) is refused too.
 * Every error names the file and the URL.
 */
/** Bytes of `file` so far (total: what the server said, or null). Same shape as source.ts FileProgress. */
type FileProgress = { file: string; loaded: number; total: number | null };

export interface DownloadOptions {
  /** Give up when no byte arrives for this long (default 30 s). */
  stallTimeoutMs?: number;
  /** Tries after the first on a 5xx, a network error or a stall (default 2; a 4xx or a bad body is not retried). */
  retries?: number;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
}

// Errors of this module, and those worth another try (a 5xx, a dropped connection, a stall).
// Plain Errors: callers and tests see `Error` with a message, nothing to import.
const ours = new WeakSet<Error>();
const transient = new WeakSet<Error>();

function failure(message: string, retry: boolean): Error {
  const e = new Error(message);
  ours.add(e);
  if (retry) transient.add(e);
  return e;
}

const isOurs = (e: unknown): e is Error => e instanceof Error && ours.has(e);

/** The bytes of `url` (model file `file`), with their SHA-256 (hex) and content type. An SPA's HTML page for a non-HTML file counts as a 404. */
export async function download(url: string, file: string, opts: DownloadOptions = {}, onProgress?: (p: FileProgress) => void): Promise<{ bytes: Uint8Array; sha256: string; type: string }> {
  const retries = opts.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadOnce(url, file, opts, onProgress);
    } catch (e) {
      if (!(e instanceof Error) || !transient.has(e) || attempt >= retries) throw e;
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    }
  }
}

async function downloadOnce(url: string, file: string, opts: DownloadOptions, onProgress?: (p: FileProgress) => void) {
  const where = `model file "${file}" from ${url}`;
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  const abort = new AbortController();
  let res: Response;
  try {
    res = await withStall((opts.fetch ?? fetch)(url, { signal: abort.signal }), stallMs, abort, `cannot fetch ${where}: no answer in ${stallMs} ms`);
  } catch (e) {
    if (isOurs(e)) throw e;
    throw failure(`cannot fetch ${where}: ${(e as Error).message}`, true);
  }
  if (isHtmlFallback(res, file)) {
    void res.body?.cancel().catch(() => {});
    throw failure(`cannot fetch ${where}: HTTP 404 (the server answered with an HTML page)`, false);
  }
  if (!res.ok) {
    void res.body?.cancel().catch(() => {});
    throw failure(`cannot fetch ${where}: HTTP ${res.status} ${res.statusText}`.trim(), res.status >= 500 || res.status === 429);
  }
  const bytes = await readBody(res, where, file, stallMs, abort, onProgress);
  const sha256 = await sha256Hex(bytes);
  const stated = statedSha256(res);
  if (stated && stated !== sha256) throw failure(`${where} is corrupt: its SHA-256 is ${sha256}, the server states ${stated}`, false);
  return { bytes, sha256, type: res.headers.get('content-type') ?? 'application/octet-stream' };
}

/** The body, chunk by chunk (progress), each read given `stallMs`; a short body is refused. */
async function readBody(res: Response, where: string, file: string, stallMs: number, abort: AbortController, onProgress?: (p: FileProgress) => void): Promise<Uint8Array> {
  // With a content-encoding, content-length counts compressed bytes: not the body we read.
  const lengthHeader = res.headers.get('content-length');
  const total = lengthHeader !== null && !res.headers.get('content-encoding') && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  onProgress?.({ file, loaded: 0, total });
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await withStall(reader.read(), stallMs, abort, `download of ${where} stalled: no data for ${stallMs} ms after ${loaded} bytes`);
      } catch (e) {
        if (isOurs(e)) throw e;
        throw failure(`download of ${where} broke off after ${loaded}${total !== null ? ` of ${total}` : ''} bytes: ${(e as Error).message}`, true);
      }
      if (step.done) break;
      chunks.push(step.value);
      loaded += step.value.length;
      onProgress?.({ file, loaded, total });
    }
  } else {
    chunks.push(new Uint8Array(await res.arrayBuffer()));
    loaded = chunks[0].length;
  }
  if (total !== null && loaded !== total) throw failure(`download of ${where} was cut short: the body ended after ${loaded} of ${total} bytes`, true);
  return concat(chunks, loaded);
}

/** `p`, or a transient failure (and the request aborted) when it takes longer than `ms`. */
function withStall<T>(p: Promise<T>, ms: number, abort: AbortController, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(failure(message, true)); // before abort(): the aborted read must not win the race
      abort.abort();
    }, ms);
  });
  return Promise.race([p, stalled]).finally(() => clearTimeout(timer));
}

/** The SHA-256 the Hub states for an LFS file (x-linked-etag, else etag, when 64 hex digits). */
function statedSha256(res: Response): string | null {
  for (const h of ['x-linked-etag', 'etag']) {
    const v = res.headers.get(h)?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
    if (v && /^[0-9a-f]{64}$/.test(v)) return v;
  }
  return null;
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function isHtmlFallback(res: Response, file: string): boolean {
  return (res.headers.get('content-type') ?? '').startsWith('text/html') && !/\.html?$/i.test(file);
}

function concat(chunks: Uint8Array[], n: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(n);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}
