/**
 * The message and option types every engine takes (in-process, Worker,
 * remote). Names follow OpenAI (snake_case on the wire) and transformers.js
 * (camelCase options). Plain data only: these cross comlink and HTTP.
 */

/** Decoded RGBA pixels (an ImageData, or the same shape from anywhere). */
export interface PixelData {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

/** An image as the page or a caller has it: a URL (data:, blob:, http(s):) or the bytes/bitmap itself. */
export type ImageInput = string | Blob | ImageBitmap | PixelData;

/** OpenAI-style content parts; `{type: 'image', image}` is the extension for a File/Blob/ImageBitmap. */
export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string } }
  | { type: 'image'; image: Blob | ImageBitmap | PixelData };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

/** KV-cache compression of a request's prompt (kvpress-style presses; see src/kv/presses). */
export interface CompressionOptions {
  /** 'none', 'knorm', 'streaming-llm', 'sliding-window', 'snapkv', 'tova', 'observed-attention', 'expected-attention'. */
  press: string;
  /** Fraction of the compressible prompt tokens to evict, in [0, 1). */
  ratio: number;
  /** Observation window (last prompt tokens) for attention-based presses; default 16. */
  window?: number;
  /** The compressible tokens: 'all' (default), 'image' (only image tokens' span), or [start, end) of the prompt. */
  region?: 'all' | 'image' | { start: number; end: number };
}

/**
 * A compressed prefix to keep and share: the prompt's first tokens — up to
 * the end of its last image, or a token count — are prefilled alone,
 * compressed by `press` at `ratio` (it sees only the prefix: attention-based
 * presses score with the prefix's own last `window` tokens), and kept as a
 * cache entry; a later prompt that starts the same adopts the compressed
 * pages and prefills only the rest. The kept count is rounded down to whole
 * pages (the pages are shared read-only). With `persist`, entries are stored.
 */
export interface CachePrefixOptions {
  /** Where the prefix ends: after the prompt's last image token, after its leading system message(s), or after this many tokens. */
  until: 'image' | 'system' | number;
  press: string;
  /** Fraction of the prefix's tokens to evict, in [0, 1); 0 is the plain prefix cache (its pages kept and persisted as they are). */
  ratio: number;
  window?: number;
}

/**
 * A rolling KV window (StreamingLLM's serving mode): each token attends to
 * the first `sinks` tokens and the last `recent` ones (itself included);
 * pages that fall out of every later token's window go back to the pool, so
 * a request's KV stays bounded while its context grows past the model's.
 */
export interface KvWindow {
  sinks: number;
  recent: number;
}

export interface LoadProgress {
  file: string;
  loaded: number;
  total: number | null;
}
