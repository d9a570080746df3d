/**
 * ImageFeatureCache: vision-encoder outputs on the GPU, keyed by the image's
 * content hash + the model's preprocessing (PreparedImage.key), so asking
 * about the same image again — in the same conversation or a new one — does
 * not run the encoder again. Entries in use by a request are pinned; idle
 * ones are evicted least recently used first once the byte budget is passed.
 */
import type { Gpu } from '../gpu/context.ts';

interface Job {
  waiters: number;
  promise: Promise<GPUBuffer>;
}

interface Entry {
  buffer: GPUBuffer;
  users: number;
  lastUse: number;
}

export class ImageFeatureCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Job>();
  private clock = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly gpu: Gpu,
    readonly maxBytes: number,
  ) {}

  /** The features of `key` (pinned until `release(key)`), computing them with `encode` on a miss. */
  async acquire(key: string, encode: () => Promise<GPUBuffer>): Promise<GPUBuffer> {
    const hit = this.tryAcquire(key);
    if (hit) return hit;
    // requests that bring the same new image at once share one encoder run;
    // the entry appears pinned once per waiter, so nothing evicts it in between
    let job = this.pending.get(key);
    if (job) {
      this.hits++;
    } else {
      this.misses++;
      const j: Job = { waiters: 0, promise: Promise.resolve(null as unknown as GPUBuffer) };
      j.promise = encode()
        .then((buffer) => {
          this.entries.set(key, { buffer, users: j.waiters, lastUse: ++this.clock });
          return buffer;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, (job = j));
    }
    job.waiters++;
    return job.promise;
  }

  /**
   * The features of `key` if they are cached (a hit; pinned until
   * `release(key)`), else null — nothing is encoded, nothing counted.
   * An encoder run still in progress is not cached yet: `acquire` joins it.
   */
  tryAcquire(key: string): GPUBuffer | null {
    const e = this.entries.get(key);
    if (!e) return null;
    this.hits++;
    return this.pin(e);
  }

  /** Users holding `key` (0 when idle or absent): what the tests assert pins with. */
  users(key: string): number {
    return this.entries.get(key)?.users ?? 0;
  }

  release(key: string): void {
    const e = this.entries.get(key);
    if (!e || e.users === 0) throw new Error(`ImageFeatureCache.release: '${key}' is not in use`);
    e.users--;
    this.evict();
  }

  get bytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.buffer.size;
    return n;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    for (const [k, e] of this.entries) {
      this.gpu.destroyBuffer(e.buffer);
      this.entries.delete(k);
    }
  }

  private pin(e: Entry): GPUBuffer {
    e.users++;
    e.lastUse = ++this.clock;
    return e.buffer;
  }

  private evict(): void {
    if (this.bytes <= this.maxBytes) return;
    const idle = [...this.entries].filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUse - b[1].lastUse);
    let bytes = this.bytes;
    for (const [k, e] of idle) {
      if (bytes <= this.maxBytes) break;
      bytes -= e.buffer.size;
      this.gpu.destroyBuffer(e.buffer);
      this.entries.delete(k);
    }
  }
}
