/**
 * A `ChatEngine` that is a client of an OpenAI-compatible HTTP server — vLLM
 * (with LMCache or not) on a GPU box, or this project's own `npm run serve` —
 * so that the page, the CLI and tests take a remote model exactly as they take
 * a local one. The wire format is the official `openai` package's; this file
 * only maps our request/chunk shapes onto it.
 *
 *   const engine = await RemoteEngine.create({ baseURL: 'http://gpu-box:8000/v1', model: 'HuggingFaceTB/SmolVLM-256M-Instruct' });
 *   for await (const c of await engine.chat.completions.create({ messages, stream: true, request_id: 'q1' })) …
 *   await engine.abort('q1');               // closes the HTTP stream; the stream ends with finish_reason 'abort'
 *   await engine.info();                     // GET /v1/models (+ GET /v1/info where the server has it)
 *   engine.stats?.();                        // GET /v1/stats — undefined when the server reports none
 *
 * What goes over the wire, and what stays here:
 *
 *   ours                         → wire (POST /v1/chat/completions)
 *   request_id                   → kept here: the key of the AbortController (never sent)
 *   {type:'image', image: Blob}  → {type:'image_url', image_url:{url:'data:<mime>;base64,…'}}
 *   image_url with a blob: URL   → read here, sent as a data: URL (a server cannot fetch blob:)
 *   top_k, ignore_eos            → sent (vLLM takes them as extra sampling parameters)
 *   kv_compression, kv_window    → sent (our server applies them; vLLM ignores unknown fields)
 *   stream                       → + stream_options: {include_usage: true}
 *   finish chunk + usage chunk   → one last chunk with finish_reason and usage, as the local engines end
 *
 * Stats: a server without `GET /v1/stats` (vLLM) gets no `stats` method at
 * all (`ChatEngine.stats` is optional), rather than one that invents counters.
 * Usage figures the server does not send (`usage.extra`, e.g. from vLLM) are
 * measured here: TTFT, TPOT and end-to-end time as the client sees them, and
 * NaN for what only the server knows (queue delay, preemptions, …).
 */
import OpenAI from 'openai';
import type { ChatCompletionsApi, ChatEngine, ChatEngineFactory } from '../api/chat-engine.ts';
import type { ChatMessage, ContentPart } from '../api/chat-types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, FinishReasonOpenAI, Usage } from '../api/openai-types.ts';
import type { EngineInfo, EngineStats, RequestMetrics } from '../api/stats.ts';

export interface RemoteOptions {
  /** The server's OpenAI base URL, e.g. `http://127.0.0.1:8000/v1` (a bare `http://host:port` gets `/v1`). */
  baseURL: string;
  /** A model the server serves (an id from GET /v1/models); omitted or empty: the first one it lists. */
  model?: string;
  /** Sent as `Authorization: Bearer …` (vLLM's `--api-key`); kept in memory only. */
  apiKey?: string;
  /** `fetch` to use (tests); the global one by default. */
  fetch?: typeof fetch;
}

/** What `info()` adds: where the engine is and what the server reports about itself. */
export interface RemoteInfo extends EngineInfo {
  remote: {
    baseURL: string;
    /** `owned_by` of the model in GET /v1/models ('vllm' for vLLM). */
    ownedBy: string | null;
    /**
     * The server answers GET /v1/info (ours). Without it, the EngineInfo fields
     * the server does not report are placeholders: parameters / kvPages / kvPageBytes /
     * pageSize 0, dtypes 'f16', vision true (the server refuses an image a
     * model cannot read), and maxPositions is vLLM's max_model_len or 0.
     */
    reportsInfo: boolean;
    /** The server answers GET /v1/stats (ours): `stats` is defined. */
    reportsStats: boolean;
  };
}

/** An error from the server (or from reaching it), with the server's own message and the HTTP status. */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
  constructor(message: string, readonly status: number | null, readonly code: string | null = null) {
    super(message);
  }
}

/** The server's model entry (OpenAI's Model, plus vLLM's max_model_len). */
interface ModelEntry { id: string; owned_by?: string; max_model_len?: number | null }

/** Our request extensions that travel in the body, next to OpenAI's fields. */
interface BodyExtensions { top_k?: number; ignore_eos?: boolean; kv_compression?: ChatCompletionRequest['kv_compression']; kv_window?: ChatCompletionRequest['kv_window'] }

let requestCounter = 0;
const now = () => performance.now();

export class RemoteEngine implements ChatEngine {
  readonly chat: { readonly completions: ChatCompletionsApi } = { completions: { create: this.create.bind(this) as ChatCompletionsApi['create'] } };
  /** GET /v1/stats; undefined when the server reports no stats (vLLM). */
  readonly stats?: () => Promise<EngineStats>;
  /** The requests in flight, by the id the caller gave (`request_id`) or the one handed out. */
  private readonly inflight = new Map<string, AbortController>();

  private constructor(
    private readonly client: OpenAI,
    readonly baseURL: string,
    readonly model: string,
    private readonly entry: ModelEntry,
    private readonly reportsInfo: boolean,
    reportsStats: boolean,
  ) {
    if (reportsStats) this.stats = () => this.get<EngineStats>('/stats');
  }

  /**
   * Connects: lists the server's models (rejects when it is unreachable, the
   * key is refused, or it does not serve `model`) and probes our extensions.
   */
  static async create(opts: RemoteOptions): Promise<RemoteEngine> {
    const baseURL = normalizeBaseURL(opts.baseURL);
    const client = new OpenAI({
      baseURL, apiKey: opts.apiKey || 'none', dangerouslyAllowBrowser: true, maxRetries: 0,
      organization: null, project: null, ...(opts.fetch ? { fetch: opts.fetch } : {}),
    });
    const models = await call(baseURL, async () => (await client.models.list()).data as ModelEntry[]);
    const wanted = opts.model?.trim();
    const entry = wanted ? models.find((m) => m.id === wanted) : models[0];
    if (!entry) {
      const served = models.map((m) => `'${m.id}'`).join(', ') || 'none';
      throw new RemoteError(wanted ? `${baseURL} serves no model '${wanted}' (it serves: ${served})` : `${baseURL} serves no model`, 404, 'model_not_found');
    }
    const [reportsInfo, reportsStats] = await Promise.all([answers(client, '/info'), answers(client, '/stats')]);
    return new RemoteEngine(client, baseURL, entry.id, entry, reportsInfo, reportsStats);
  }

  /** Stops a request of this engine's: its HTTP stream is closed (the server aborts it), its stream ends with 'abort'. */
  abort(requestId: string): Promise<boolean> {
    const controller = this.inflight.get(requestId);
    if (!controller) return Promise.resolve(false);
    this.inflight.delete(requestId);
    controller.abort();
    return Promise.resolve(true);
  }

  /** Aborts every request in flight (the engine is being replaced). */
  close(): void {
    for (const c of this.inflight.values()) c.abort();
    this.inflight.clear();
  }

  async info(): Promise<RemoteInfo> {
    const remote = { baseURL: this.baseURL, ownedBy: this.entry.owned_by ?? null, reportsInfo: this.reportsInfo, reportsStats: this.stats !== undefined };
    if (this.reportsInfo) return { ...(await this.get<EngineInfo>('/info')), remote };
    return {
      modelId: this.model, architecture: this.entry.owned_by ? `remote (${this.entry.owned_by})` : 'remote',
      parameters: 0, weightDtype: 'f16', kvDtype: 'f16', adapter: `remote server at ${this.baseURL}`,
      kvPages: 0, kvPageBytes: 0, pageSize: 0, maxPositions: this.entry.max_model_len ?? 0,
      vision: true, visionBackend: null, randomWeights: false, remote,
    };
  }

  // ---------------------------------------------------------------- completions

  private create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  private create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const id = req.request_id ?? `remote-${Date.now().toString(36)}-${++requestCounter}`;
    if (this.inflight.has(id)) throw new Error(`request_id '${id}' is already running on this engine`);
    const controller = new AbortController();
    this.inflight.set(id, controller); // abortable from now on, even while images are read
    const started = now();
    const model = req.model ?? this.model;
    try {
      const body = { ...(await toBody(req)), model };
      if (!req.stream) {
        const r = await this.client.chat.completions.create({ ...body, stream: false }, { signal: controller.signal });
        return completion(id, r, started);
      }
      const stream = await this.client.chat.completions.create(
        { ...body, stream: true, stream_options: { include_usage: true } }, { signal: controller.signal },
      );
      return this.chunks(id, model, stream, controller, started);
    } catch (e) {
      this.inflight.delete(id);
      if (!controller.signal.aborted) throw toRemoteError(e, this.baseURL);
      // aborted before the server answered: end as the local engines do
      const created = Math.floor(Date.now() / 1000);
      if (req.stream) return (async function* () { yield lastChunk(id, created, model, 'abort'); })();
      return { id, object: 'chat.completion', created, model, choices: [{ index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'abort', logprobs: null }], usage: clientUsage(null, started, NaN) };
    }
  }

  /**
   * The server's chunks in our shape: the first carries the role, empty ones
   * are dropped, and the finish chunk is held back until the usage chunk
   * (OpenAI sends usage in a chunk of its own, with no choices) so the last
   * chunk has both. Leaving the loop early or abort() closes the HTTP stream.
   */
  private async *chunks(
    id: string, model: string, stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>, controller: AbortController, started: number,
  ): AsyncGenerator<ChatCompletionChunk> {
    const created = Math.floor(Date.now() / 1000);
    let finish: FinishReasonOpenAI | null = null;
    let usage: OpenAI.CompletionUsage | null = null;
    let firstAt = NaN;
    let done = false;
    try {
      try {
        for await (const c of stream) {
          if (c.usage) usage = c.usage;
          const choice = c.choices[0];
          if (!choice) continue;
          const text = choice.delta?.content ?? '';
          if (text) {
            const first = Number.isNaN(firstAt);
            if (first) firstAt = now();
            yield { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: first ? { role: 'assistant', content: text } : { content: text }, finish_reason: null, logprobs: null }] };
          }
          if (choice.finish_reason) finish = toFinish(choice.finish_reason);
        }
      } catch (e) {
        if (!controller.signal.aborted) throw toRemoteError(e, this.baseURL);
      }
      done = true;
      if (controller.signal.aborted && finish === null) finish = 'abort';
      const last = lastChunk(id, created, model, finish ?? 'stop');
      yield usage ? { ...last, usage: clientUsage(usage, started, firstAt) } : last;
    } finally {
      this.inflight.delete(id);
      if (!done) controller.abort(); // the caller stopped reading: close the stream, the server aborts the request
    }
  }

  private get<T>(path: string): Promise<T> {
    return call(this.baseURL, () => this.client.get<T>(path));
  }
}

/**
 * The factory a model picker takes for one server: each call connects to
 * `model` on it (the previous engine's requests are aborted). The key stays
 * in this closure, in memory.
 */
export function remoteEngines(server: { baseURL: string; apiKey?: string; fetch?: typeof fetch }): ChatEngineFactory<RemoteEngine> {
  let last: RemoteEngine | null = null;
  return async (model) => {
    last?.close();
    last = await RemoteEngine.create({ ...server, model });
    return last;
  };
}

// ---------------------------------------------------------------- the wire format

function normalizeBaseURL(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new TypeError(`'${raw}' is not a URL: give the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`'${raw}' is not an http(s) URL`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1';
  return url.href.replace(/\/+$/, '');
}

async function toBody(req: ChatCompletionRequest): Promise<Omit<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, 'model'> & BodyExtensions> {
  const body: Omit<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, 'model'> & BodyExtensions = { messages: await Promise.all(req.messages.map(toMessage)) };
  if (req.max_tokens !== undefined) body.max_tokens = req.max_tokens;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.top_p !== undefined) body.top_p = req.top_p;
  if (req.seed !== undefined) body.seed = req.seed;
  if (req.stop !== undefined) body.stop = req.stop;
  if (req.top_k !== undefined) body.top_k = req.top_k;
  if (req.ignore_eos) body.ignore_eos = true;
  if (req.kv_compression) body.kv_compression = req.kv_compression;
  if (req.kv_window) body.kv_window = req.kv_window;
  return body;
}

async function toMessage(m: ChatMessage): Promise<OpenAI.Chat.ChatCompletionMessageParam> {
  if (typeof m.content === 'string' || !Array.isArray(m.content)) return { role: m.role, content: m.content } as OpenAI.Chat.ChatCompletionMessageParam;
  const parts = await Promise.all(m.content.map(toPart));
  return { role: m.role, content: parts } as OpenAI.Chat.ChatCompletionMessageParam;
}

async function toPart(p: ContentPart): Promise<OpenAI.Chat.ChatCompletionContentPart> {
  if (p.type === 'text') return { type: 'text', text: p.text };
  if (p.type === 'image_url') {
    const url = p.image_url.url;
    return { type: 'image_url', image_url: { url: url.startsWith('blob:') ? await dataURL(await (await fetch(url)).blob()) : url } };
  }
  if (p.type === 'image') return { type: 'image_url', image_url: { url: await dataURL(await imageBlob(p.image)) } };
  return p;
}

/** An ImageBitmap or RGBA pixels as a PNG (where the runtime has OffscreenCanvas: browsers), a Blob as it is. */
async function imageBlob(image: Blob | ImageBitmap | { width: number; height: number; data: Uint8ClampedArray | Uint8Array }): Promise<Blob> {
  if (image instanceof Blob) return image;
  if (typeof OffscreenCanvas === 'undefined') {
    throw new TypeError('A remote engine sends images as data: URLs: give a Blob/File or an image URL (ImageBitmap and pixel data need OffscreenCanvas, which this runtime lacks)');
  }
  const canvas = new OffscreenCanvas(image.width, image.height);
  const ctx = canvas.getContext('2d')!;
  if ('data' in image) ctx.putImageData(new ImageData(new Uint8ClampedArray(image.data), image.width, image.height), 0, 0);
  else ctx.drawImage(image, 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

async function dataURL(blob: Blob): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  if (bytes.length === 0) throw new TypeError('The image is empty (0 bytes)');
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:${blob.type || sniffMime(bytes)};base64,${btoa(binary)}`;
}

/** The image type from its first bytes, for a Blob without one. */
function sniffMime(b: Uint8Array): string {
  const starts = (...sig: number[]) => sig.every((v, i) => b[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'image/webp';
  if (starts(0x42, 0x4d)) return 'image/bmp';
  return 'application/octet-stream';
}

function completion(id: string, r: OpenAI.Chat.ChatCompletion, started: number): ChatCompletion {
  const choice = r.choices[0];
  return {
    id, object: 'chat.completion', created: r.created, model: r.model,
    choices: [{ index: 0, message: { role: 'assistant', content: choice?.message.content ?? '' }, finish_reason: toFinish(choice?.finish_reason), logprobs: null }],
    usage: clientUsage(r.usage ?? null, started, NaN),
  };
}

function lastChunk(id: string, created: number, model: string, finish: FinishReasonOpenAI): ChatCompletionChunk {
  return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: {}, finish_reason: finish, logprobs: null }] };
}

function toFinish(reason: string | null | undefined): FinishReasonOpenAI {
  return reason === 'length' ? 'length' : reason === 'abort' ? 'abort' : 'stop';
}

/**
 * Our `Usage`: the server's `extra` when it sends one (our server), else the
 * figures this client can measure (arrival = the create() call) and NaN for
 * what only the server knows.
 */
function clientUsage(u: (OpenAI.CompletionUsage & { extra?: RequestMetrics }) | null, started: number, firstAt: number): Usage {
  const prompt = u?.prompt_tokens ?? 0;
  const completionTokens = u?.completion_tokens ?? 0;
  if (u?.extra) return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: u.total_tokens ?? prompt + completionTokens, extra: u.extra };
  const end = now();
  const cached = u?.prompt_tokens_details?.cached_tokens;
  const extra: RequestMetrics = {
    queueDelayMs: NaN, ttftMs: firstAt - started, prefillTtftMs: NaN,
    tpotMs: completionTokens > 1 && !Number.isNaN(firstAt) ? (end - firstAt) / (completionTokens - 1) : 0,
    e2eMs: end - started, promptTokens: prompt, completionTokens,
    preemptions: NaN, evictedTokens: NaN, prefixHitTokens: typeof cached === 'number' ? cached : NaN,
  };
  return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: u?.total_tokens ?? prompt + completionTokens, extra };
}

/** Whether the server answers GET `path` (our extensions); a 404 or any failure means it does not. */
async function answers(client: OpenAI, path: string): Promise<boolean> {
  try {
    await client.get(path);
    return true;
  } catch {
    return false;
  }
}

async function call<T>(baseURL: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toRemoteError(e, baseURL);
  }
}

/** The server's message and status, in words a reader can act on. */
function toRemoteError(e: unknown, baseURL: string): Error {
  if (e instanceof RemoteError) return e;
  if (e instanceof OpenAI.APIConnectionError) {
    return new RemoteError(`Could not reach the server at ${baseURL}: is it running, and does it allow requests from this page (CORS, e.g. vllm serve --allowed-origins)?`, null, 'connection_error');
  }
  if (e instanceof OpenAI.APIError) {
    const body = e.error as { message?: unknown } | undefined;
    const message = typeof body?.message === 'string' ? body.message : e.message.replace(/^\d{3} /, '');
    const status = typeof e.status === 'number' ? e.status : null;
    return new RemoteError(status ? `${message} (HTTP ${status} from ${baseURL})` : `${message} (from ${baseURL})`, status, e.code ?? null);
  }
  return e instanceof Error ? e : new Error(String(e));
}
