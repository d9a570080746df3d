import type { AsyncQueue } from './async-queue.ts';
import type { PreparedPrompt } from './input.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from '../api/openai-types.ts';
import type { GenerateOptions, GenerationChunk, GenerationResult } from './types.ts';
import { checkChatRequest } from './option-checks.ts';

/** What the OpenAI surface needs of an engine. */
export interface CompletionsHost {
  readonly modelId: string;
  prepare(messages: ChatCompletionRequest['messages'], opts: GenerateOptions): Promise<PreparedPrompt>;
  submit(prompt: PreparedPrompt, opts: GenerateOptions): { id: string; queue: AsyncQueue<GenerationChunk, GenerationResult> };
  cancel(id: string): boolean;
}

/** `engine.chat.completions.create(...)`, as in OpenAI's SDK and web-llm. */
export class ChatCompletions {
  constructor(private readonly engine: CompletionsHost) {}

  create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const opts = this.toOptions(req);
    // bad input (an unreadable image included) throws here, before anything streams
    const { id, queue } = this.engine.submit(await this.engine.prepare(req.messages, opts), opts);
    const created = Math.floor(Date.now() / 1000);
    const model = this.engine.modelId;
    if (req.stream) return streamChunks(id, created, model, queue, () => this.engine.cancel(id));
    let content = '';
    for (;;) {
      const r = await queue.next();
      if (!r.done) {
        content += r.value.text;
        continue;
      }
      return {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: openAiFinish(r.value), logprobs: null }],
        usage: usage(r.value),
      };
    }
  }

  private toOptions(req: ChatCompletionRequest): GenerateOptions {
    checkChatRequest(req);
    if (req.model && req.model !== this.engine.modelId) {
      throw new Error(`model '${req.model}' is not loaded (the engine has '${this.engine.modelId}'); call load() first or omit 'model'`);
    }
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw new TypeError("'messages' must be a non-empty array of {role, content}");
    for (const m of req.messages) {
      const okContent = typeof m?.content === 'string' || (Array.isArray(m?.content) && m.content.every((p) => ['text', 'image_url', 'image'].includes(p?.type)));
      if (!okContent || !['system', 'user', 'assistant'].includes(m.role)) {
        throw new TypeError(`each message needs role 'system' | 'user' | 'assistant' and content: a string or parts {type: 'text' | 'image_url' | 'image'}; got ${describe(m)}`);
      }
    }
    const sampling: NonNullable<GenerateOptions['sampling']> = { temperature: req.temperature ?? 1 };
    if (req.top_p !== undefined) sampling.topP = req.top_p;
    if (req.top_k !== undefined) sampling.topK = req.top_k;
    if (req.seed !== undefined) sampling.seed = req.seed >>> 0;
    const opts: GenerateOptions = { sampling };
    if (req.max_tokens !== undefined) opts.maxTokens = req.max_tokens;
    if (req.stop !== undefined) opts.stop = typeof req.stop === 'string' ? [req.stop] : req.stop;
    if (req.ignore_eos) opts.ignoreEos = true;
    if (req.request_id) opts.requestId = req.request_id;
    if (req.kv_compression) opts.compression = req.kv_compression;
    if (req.kv_window) opts.window = req.kv_window;
    if (req.cache_prefix) opts.cachePrefix = req.cache_prefix;
    return opts;
  }
}

async function* streamChunks(
  id: string, created: number, model: string,
  queue: AsyncIterator<{ text: string }, GenerationResult>,
  abandon: () => void,
): AsyncGenerator<ChatCompletionChunk> {
  const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: ChatCompletionChunk['choices'][0]['finish_reason']): ChatCompletionChunk => ({
    id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
  });
  let first = true;
  let done = false;
  try {
    for (;;) {
      const r = await queue.next();
      if (r.done) {
        done = true;
        yield { ...chunk({}, openAiFinish(r.value)), usage: usage(r.value) };
        return;
      }
      if (!r.value.text && !first) continue;
      yield chunk(first ? { role: 'assistant', content: r.value.text } : { content: r.value.text }, null);
      first = false;
    }
  } finally {
    if (!done) abandon(); // the caller stopped reading: free the request's pages
  }
}

/** OpenAI has no 'error' finish: a request the engine could not finish fails, as a server error does mid-stream. */
function openAiFinish(r: GenerationResult): Exclude<GenerationResult['finishReason'], 'error'> {
  if (r.finishReason === 'error') throw new Error(r.error ?? 'the engine could not finish this request');
  return r.finishReason;
}

function usage(r: GenerationResult): Usage {
  const { tokensPerSecond: _, ...extra } = r.timing;
  return { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length, extra };
}

/** A message for an error: its JSON when it has one (a cycle or a BigInt has none). */
function describe(m: unknown): string {
  try {
    return (JSON.stringify(m) ?? String(m)).slice(0, 80);
  } catch {
    return typeof m;
  }
}
