/**
 * Turns a growing list of generated ids into text deltas for streaming, and
 * watches for stop strings. Decoding the whole list each time (rather than
 * token by token) keeps multi-byte characters and tokenizer spacing right;
 * text that might be the start of a stop string, or an unfinished UTF-8
 * character (U+FFFD at the end), is held back until it is settled.
 */
export interface Decoder {
  decode(ids: number[]): string;
}

export interface DetokenizerStep {
  delta: string;
  /** The stop string that ended the text, if one appeared. */
  stop: string | null;
}

export class IncrementalDetokenizer {
  private ids: number[] = [];
  private emitted = 0;
  private text = '';

  constructor(
    private readonly decoder: Decoder,
    private readonly stops: string[] = [],
  ) {
    if (stops.some((s) => s.length === 0)) throw new RangeError('stop strings must not be empty');
  }

  push(id: number): DetokenizerStep {
    this.ids.push(id);
    this.text = this.decoder.decode(this.ids);
    let stopAt = -1;
    let stop: string | null = null;
    for (const s of this.stops) {
      const at = this.text.indexOf(s);
      if (at >= 0 && (stopAt < 0 || at < stopAt)) {
        stopAt = at;
        stop = s;
      }
    }
    if (stop !== null) {
      this.text = this.text.slice(0, stopAt);
      return { delta: this.take(this.text.length), stop };
    }
    return { delta: this.take(this.settledLength()), stop: null };
  }

  /** Whatever is held back, at the end of generation. */
  flush(): string {
    return this.take(this.text.length);
  }

  get fullText(): string {
    return this.text;
  }

  private settledLength(): number {
    let end = this.text.length;
    if (this.text.endsWith('\uFFFD')) end -= 1;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, end); k > 0; k--) {
        if (this.text.slice(end - k, end) === s.slice(0, k)) {
          end -= k;
          break;
        }
      }
    }
    return Math.max(end, this.emitted);
  }

  private take(end: number): string {
    if (end <= this.emitted) return '';
    const d = this.text.slice(this.emitted, end);
    this.emitted = end;
    return d;
  }
}
