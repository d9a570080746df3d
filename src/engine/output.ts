/**
 * The engine's output stage: each request's caller-facing side — its
 * streaming detokenizer (stop strings, held-back partial characters), the
 * queue its chunks go to, its logits — from submit to the final result.
 * It turns a step's StepResult into chunks; a stop string ends a request
 * through the scheduler, which stays the one writer of request state.
 */
import type { Tokenizer } from '../model/tokenizer.ts';
import type { Request } from '../scheduler/request.ts';
import type { StepResult } from '../scheduler/scheduler.ts';
import { requestMetrics, type RequestMetrics } from '../scheduler/metrics.ts';
import { AsyncQueue } from './async-queue.ts';
import { IncrementalDetokenizer } from './detokenizer.ts';
import { detokenizerContext } from './detokenizer-context.ts';
import type { GenerationChunk, GenerationResult } from './types.ts';

interface Active {
  request: Request;
  logits: Float32Array[] | null;
  detok: IncrementalDetokenizer;
  queue: AsyncQueue<GenerationChunk, GenerationResult>;
}

export interface OutputHooks {
  /** A stop string ended `r` (the scheduler frees its pages). */
  stop(r: Request): void;
  /** `r` ended for good (any reason): release what it pinned. */
  closed(r: Request, metrics: RequestMetrics): void;
}

export class EngineOutput {
  private readonly active = new Map<string, Active>();

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly hooks: OutputHooks,
  ) {}

  /** Opens `r`'s stream; its id must be unique among requests in flight. */
  open(r: Request, stop: readonly string[]): AsyncQueue<GenerationChunk, GenerationResult> {
    if (this.active.has(r.id)) throw new Error(`a request with id '${r.id}' is already running; request ids must be unique`);
    const queue = new AsyncQueue<GenerationChunk, GenerationResult>();
    this.active.set(r.id, { request: r, queue, logits: r.wantsLogits ? [] : null, detok: this.detokenizer(r, stop) });
    return queue;
  }

  /**
   * A continued prompt's text keeps the first generated token's leading space
   * (decoded after the prompt's tail); a chat answer is decoded alone. Every
   * stream (engine, Worker, server) gets its text from here.
   */
  private detokenizer(r: Request, stop: readonly string[]): IncrementalDetokenizer {
    return new IncrementalDetokenizer(this.tokenizer, [...stop], detokenizerContext(this.tokenizer, r.promptIds));
  }

  has(id: string): boolean {
    return this.active.has(id);
  }

  get ids(): string[] {
    return [...this.active.keys()];
  }

  /** Streams a step's new tokens to their callers and closes the requests that finished. */
  deliver(step: StepResult): void {
    for (const { request: r, token, logits } of step.tokens) {
      const a = this.active.get(r.id);
      if (!a) continue;
      if (logits) a.logits?.push(logits);
      const { delta, stop } = a.detok.push(token);
      a.queue.push({ token, text: delta });
      if (stop !== null && !r.finished) this.hooks.stop(r);
      if (r.finished) this.close(r);
    }
    for (const r of step.finished) this.close(r);
  }

  /** Ends `r`'s stream with its result (the scheduler has set its finish reason; `error` says why for 'error'). */
  close(r: Request, error?: string): void {
    const a = this.active.get(r.id);
    if (!a) return;
    this.active.delete(r.id);
    const rest = a.detok.flush();
    if (rest) a.queue.push({ token: -1, text: rest });
    const m = requestMetrics(r);
    const tokens = [...r.outputIds];
    this.hooks.closed(r, m);
    a.queue.end({
      id: r.id,
      text: a.detok.fullText,
      tokens,
      promptTokens: r.promptIds.length,
      finishReason: r.finishReason ?? 'abort',
      ...(error ? { error } : {}),
      timing: { ...m, tokensPerSecond: m.tpotMs > 0 ? 1000 / m.tpotMs : 0 },
      ...(a.logits ? { logits: a.logits.slice(0, tokens.length) } : {}),
    });
  }

  /** Fails `r`'s stream with `e` (the scheduler has ended it). */
  fail(r: Request, e: unknown): void {
    const a = this.active.get(r.id);
    if (!a) return;
    this.active.delete(r.id);
    a.queue.fail(e);
  }

  /** Fails every open stream with `e` (the loop broke); returns the requests it failed. */
  failAll(e: unknown): Request[] {
    const failed = [...this.active.values()];
    this.active.clear();
    for (const a of failed) a.queue.fail(e);
    return failed.map((a) => a.request);
  }
}
