/**
 * The OpenAI chat-completions shapes this engine speaks (the subset web-llm
 * and the OpenAI SDK use), plus a few named extensions.
 */
import type { ChatMessage, CompressionOptions, KvWindow, CachePrefixOptions } from './chat-types.ts';
import type { RequestMetrics } from './stats.ts';

export interface ChatCompletionRequest {
  model?: string;
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  /** extensions */
  top_k?: number;
  ignore_eos?: boolean;
  /** Id for the completion (and for `abort`); generated when absent. */
  request_id?: string;
  /** KV-cache compression of the prompt: { press, ratio, window?, region? } (see CompressionOptions). */
  kv_compression?: CompressionOptions;
  /** A rolling KV window { sinks, recent } (see KvWindow). */
  kv_window?: KvWindow;
  /** A compressed prefix to keep and share across requests (CachePrefixOptions). */
  cache_prefix?: CachePrefixOptions;
}

export type FinishReasonOpenAI = 'stop' | 'length' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** extension: this request's latency figures, in milliseconds */
  extra: RequestMetrics;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReasonOpenAI; logprobs: null }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReasonOpenAI | null; logprobs: null }[];
  /** Only on the last chunk. */
  usage?: Usage;
}
