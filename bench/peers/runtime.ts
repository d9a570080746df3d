/**
 * One runtime of the peers benchmark: it loads a model folder prepared by
 * bench/peers/prepare.ts and decodes greedily from given token ids, reporting
 * when the first new token arrived. Every runtime is timed the same way: from
 * the call to the first token (TTFT) and to the last.
 */
export interface PeerRun {
  /** The new tokens' ids. */
  ids: number[];
  ttftMs: number;
  totalMs: number;
}

export interface PeerRuntime {
  readonly name: string;
  /** What it runs on, for the table (e.g. "WebGPU", "wasm, 1 thread"). */
  readonly backend: string;
  /** `url`: the model folder (config.json, model.safetensors, onnx/model.onnx, model.gguf). */
  load(url: string, name: string): Promise<void>;
  generate(prompt: number[], maxTokens: number): Promise<PeerRun>;
  close(): Promise<void>;
}

/** Times a generation: `token()` at each new token's arrival, `done()` at the end. */
export class TokenClock {
  private readonly t0 = performance.now();
  private first: number | null = null;

  token(): void {
    this.first ??= performance.now();
  }

  done(ids: number[]): PeerRun {
    const end = performance.now();
    return { ids, ttftMs: (this.first ?? end) - this.t0, totalMs: end - this.t0 };
  }
}
