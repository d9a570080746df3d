/**
 * A `ChatEngine` behind an OpenAI-compatible HTTP server (`node:http` only):
 *
 *   POST /v1/chat/completions   JSON, or server-sent events with `stream: true`
 *   GET  /v1/models, /v1/models/{id}   the loaded model, in OpenAI's list shape
 *   GET  /health                {status: 'ok', model}
 *   GET  /v1/stats, /v1/info    extensions: the engine's EngineStats / EngineInfo
 *
 * Errors are OpenAI's `{error: {message, type, param, code}}` with the HTTP
 * status (api-error.ts). A client that disconnects aborts its request, so
 * the engine frees its pages at once. CORS is off unless `corsOrigin` names
 * the one origin allowed. `scripts/serve.ts` is the CLI around it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { ChatEngine } from '../api/chat-engine.ts';
import type { ChatCompletion, ChatCompletionChunk } from '../api/openai-types.ts';
import type { EngineInfo } from '../api/stats.ts';
import { ApiError, fromEngineError, sendError } from './api-error.ts';
import { readJsonBody } from './json-body.ts';
import { parseChatRequest, type ModelNames } from './chat-request.ts';
import { SseStream } from './sse.ts';

export interface OpenAIServerOptions {
  /** Interface to bind (default 127.0.0.1: this machine only). */
  host?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** Largest request body in bytes (default 8 MiB: room for a few images as data URLs). */
  maxBodyBytes?: number;
  /** The one browser origin allowed to call the server (CORS); default none, and no Access-Control headers. */
  corsOrigin?: string | null;
  /** The model's name in /v1/models and in requests' `model` (default the engine's model id, which is accepted too). */
  servedModelName?: string;
  /** The whole request (headers + body) must arrive within this many ms, or it gets a 408 (default 60 000). */
  requestTimeoutMs?: number;
  /** Called with one line per answered request: method, path, status, milliseconds. */
  log?: (line: string) => void;
}

export interface OpenAIServer {
  /** `http://host:port` (the port actually bound). */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Stops accepting, aborts requests in flight, closes every connection. The engine stays (its owner destroys it). */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 8 * 2 ** 20;
const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** Starts the server over `engine` and resolves once it listens. */
export async function startOpenAIServer(engine: ChatEngine, opts: OpenAIServerOptions = {}): Promise<OpenAIServer> {
  const server = new HttpServer(engine, await engine.info(), opts);
  await server.listen(opts.port ?? 8000, opts.host ?? '127.0.0.1');
  return server;
}

class HttpServer implements OpenAIServer {
  readonly server: Server;
  url = '';
  port = 0;
  private readonly names: ModelNames;
  private readonly maxBodyBytes: number;
  private readonly routes: Record<string, Record<string, Handler>>;
  /** Ids of the completions being served (client-chosen ones must not collide). */
  private readonly inFlight = new Set<string>();
  private closing = false;

  constructor(
    private readonly engine: ChatEngine,
    info: EngineInfo,
    private readonly opts: OpenAIServerOptions,
  ) {
    this.names = { served: opts.servedModelName ?? info.modelId, engine: info.modelId };
    this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    // max_model_len as vLLM reports it: the longest prompt + output
    const model = { id: this.names.served, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'fastcache-web', max_model_len: info.maxPositions };
    this.routes = {
      '/v1/chat/completions': { POST: (req, res) => this.chatCompletions(req, res) },
      '/v1/models': { GET: async (_, res) => sendJson(res, 200, { object: 'list', data: [model] }) },
      '/v1/models/{id}': { GET: async (req, res) => sendJson(res, 200, this.modelNamed(decodeSegment(pathOf(req).slice('/v1/models/'.length)), model)) },
      '/health': { GET: async (_, res) => sendJson(res, this.closing ? 503 : 200, { status: this.closing ? 'shutting_down' : 'ok', model: this.names.served }) },
      '/v1/info': { GET: async (_, res) => sendJson(res, 200, await engine.info()) },
      '/v1/stats': {
        GET: async (_, res) => {
          if (!engine.stats) throw new ApiError(404, 'this engine keeps no stats', 'not_supported');
          sendJson(res, 200, await engine.stats());
        },
      },
    };
    // a stalled upload gets a 408 and its connection closed, never a hung request (Node checks every interval)
    const requestTimeout = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.server = createServer(
      { requestTimeout, headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(30_000, Math.max(10, requestTimeout / 4)) },
      (req, res) => this.onRequest(req, res),
    );
    // `Expect: 100-continue` with a body over the limit: refuse it before the client sends it
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (!(Number(req.headers['content-length']) > this.maxBodyBytes)) res.writeContinue();
      this.onRequest(req, res);
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const addr = this.server.address() as AddressInfo;
        this.port = addr.port;
        this.url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.inFlight].map((id) => this.engine.abort(id)));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    setTimeout(() => this.server.closeAllConnections(), 1000).unref(); // aborted streams end within a step
    await closed;
  }

  // ---------------------------------------------------------------- requests

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    for (const [k, v] of Object.entries(corsHeaders(req, this.opts.corsOrigin ?? null))) res.setHeader(k, v);
    res.once('finish', () => this.opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - start).toFixed(0)}ms`));
    this.handle(req, res).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) res.destroy(); // mid-response: all we can do is end it
      else sendError(res, fromEngineError(e, this.names));
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req);
    const methods = this.routes[path.startsWith('/v1/models/') ? '/v1/models/{id}' : path];
    if (!methods) throw new ApiError(404, `Invalid URL (${req.method} ${path})`, 'unknown_url');
    const allow = [...Object.keys(methods), ...(methods.GET ? ['HEAD'] : []), 'OPTIONS'].join(', ');
    if (req.method === 'OPTIONS') return preflight(req, res, allow, this.opts.corsOrigin ?? null);
    const handler = methods[req.method === 'HEAD' ? 'GET' : (req.method ?? '')];
    if (!handler) throw new ApiError(405, `${req.method} is not allowed on ${path} (allowed: ${allow})`, 'method_not_allowed', null, { Allow: allow });
    if (this.closing) throw new ApiError(503, 'the server is shutting down', 'shutting_down');
    await handler(req, res);
  }

  /** POST /v1/chat/completions: the engine always streams to us; we stream on, or collect one JSON reply. */
  private async chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = parseChatRequest(await readJsonBody(req, this.maxBodyBytes), this.names);
    const id = request.request_id ?? `chatcmpl-${randomUUID()}`;
    if (this.inFlight.has(id)) throw new ApiError(409, `a request with id '${id}' is already running; request ids must be unique`, 'request_id_in_use', 'request_id');
    this.inFlight.add(id);
    let gone = false;
    const onClose = () => {
      if (res.writableFinished) return;
      gone = true;
      void this.engine.abort(id); // the client left: free the request's pages now
    };
    res.once('close', onClose);
    try {
      const chunks = await this.engine.chat.completions.create({ ...request, request_id: id, stream: true });
      if (gone) await this.engine.abort(id); // it left while the prompt was prepared (before the engine knew the id)
      const named = renamed(chunks, this.names);
      if (request.stream) await streamOut(res, named, () => gone);
      else {
        const completion = await collect(named);
        if (!gone) sendJson(res, 200, completion);
      }
    } finally {
      res.off('close', onClose);
      this.inFlight.delete(id);
    }
  }

  private modelNamed(id: string, model: object): object {
    if (id !== this.names.served && id !== this.names.engine) {
      throw new ApiError(404, `the model '${id}' does not exist (this server has '${this.names.served}')`, 'model_not_found', 'model');
    }
    return model;
  }
}

// ---------------------------------------------------------------- responses

/**
 * SSE out. The first chunk is awaited before the 200 goes out, so an engine
 * failure before any token is still a proper HTTP error; a failure later is
 * an error event (the OpenAI clients throw it) and the stream ends without [DONE].
 */
async function streamOut(res: ServerResponse, chunks: AsyncIterable<ChatCompletionChunk>, gone: () => boolean): Promise<void> {
  const it = chunks[Symbol.asyncIterator]();
  let next = await it.next();
  if (gone()) {
    while (!next.done) next = await it.next(); // aborted: the stream ends within a step
    return;
  }
  const sse = new SseStream(res);
  sse.open();
  try {
    for (; !next.done; next = await it.next()) await sse.send(next.value);
    sse.done();
  } catch (e) {
    await sse.send(fromEngineError(e, null).toBody());
    sse.end();
  }
}

/** The whole reply from the stream: its text, and the last chunk's finish reason and usage. */
async function collect(chunks: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletion> {
  let content = '';
  let last: ChatCompletionChunk | null = null;
  for await (const c of chunks) {
    content += c.choices[0]?.delta.content ?? '';
    last = c;
  }
  if (!last?.usage || !last.choices[0]?.finish_reason) throw new Error('the engine ended the stream without a finish reason and usage');
  const { id, created, model } = last;
  return {
    id, object: 'chat.completion', created, model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: last.choices[0].finish_reason, logprobs: null }],
    usage: last.usage,
  };
}

/** The chunks with `model` as the client named it (the served name). */
async function* renamed(chunks: AsyncIterable<ChatCompletionChunk>, names: ModelNames): AsyncGenerator<ChatCompletionChunk> {
  for await (const c of chunks) yield c.model === names.engine ? { ...c, model: names.served } : c;
}

function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://localhost').pathname;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a malformed %-escape names no model: a 404 like any other
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// ---------------------------------------------------------------- CORS

/** Access-Control headers for a request from the allowed origin; none otherwise (and none at all when CORS is off). */
function corsHeaders(req: IncomingMessage, allowed: string | null): Record<string, string> {
  if (allowed === null) return {};
  if (req.headers.origin !== allowed) return { Vary: 'Origin' };
  return { 'Access-Control-Allow-Origin': allowed, Vary: 'Origin' };
}

/** OPTIONS: the allowed methods, and for the allowed origin's preflight what it may send. */
async function preflight(req: IncomingMessage, res: ServerResponse, allow: string, allowed: string | null): Promise<void> {
  const headers: Record<string, string> = { Allow: allow };
  if (allowed !== null && req.headers.origin === allowed) {
    headers['Access-Control-Allow-Methods'] = allow;
    headers['Access-Control-Allow-Headers'] = req.headers['access-control-request-headers'] ?? 'Content-Type, Authorization';
    headers['Access-Control-Max-Age'] = '600';
    headers.Vary = 'Origin, Access-Control-Request-Headers';
  }
  res.writeHead(204, headers);
  res.end();
}
