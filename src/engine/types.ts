/** Types at the engine's public boundary. Names follow transformers.js (camelCase) and OpenAI. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface GenerateOptions {
  maxTokens?: number;
  sampling?: { temperature?: number; topK?: number; topP?: number; seed?: number };
  stop?: string[];
  /** Keep generating past the EOS token (benchmarks). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
}

export interface GenerationChunk {
  /** The sampled id, or -1 for text released at the end. */
  token: number;
  text: string;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  promptTokens: number;
  finishReason: 'stop' | 'length' | 'abort';
  timing: { prefillMs: number; ttftMs: number; decodeMs: number; tokensPerSecond: number };
}

export interface LoadProgress {
  file: string;
  loaded: number;
  total: number | null;
}
