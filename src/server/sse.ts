/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` per chunk,
 * `data: [DONE]\n\n` at the end, each written to the socket at once (no
 * Nagle delay, no proxy buffering). A slow reader is waited for (`drain`)
 * rather than buffered without bound; a reader that went away ends the wait.
 */
import type { ServerResponse } from 'node:http';

export class SseStream {
  private gone = false;

  constructor(private readonly res: ServerResponse) {
    res.once('close', () => (this.gone = true));
  }

  /** Sends the 200 and the event-stream headers now, before the first event. */
  open(headers: Record<string, string> = {}): void {
    this.res.socket?.setNoDelay(true);
    this.res.writeHead(200, {
      ...headers,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    this.res.flushHeaders();
  }

  /** Writes one event; resolves once the socket can take more (or the reader is gone). */
  async send(data: unknown): Promise<void> {
    if (this.gone) return;
    if (this.res.write(`data: ${JSON.stringify(data)}\n\n`)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.once('drain', done);
      this.res.once('close', done);
    });
  }

  /** `data: [DONE]` and the end of the response. */
  done(): void {
    if (!this.gone) this.res.end('data: [DONE]\n\n');
  }

  /** Ends the response without [DONE] (after an error event). */
  end(): void {
    if (!this.gone) this.res.end();
  }
}
