/**
 * Images that were not encoded when their prompt was prepared, because the
 * KV of every position they fill was cached then (GPU, CPU or stored tier).
 * If the cache loses those pages before the request is admitted — or the
 * request is preempted and recomputed — the scheduler holds it back
 * (`needingFeatures`); this runs the encoder for it, hands the features to
 * the scheduler, and lets the engine loop wait when nothing else can run.
 */
import type { Request } from '../scheduler/request.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';
import type { ImageFeatureCache } from './image-features.ts';

export class DeferredImages {
  private readonly jobs = new Map<Request, Promise<void>>();

  /** `failed`: a request whose encode failed (the scheduler has ended it): fail its stream, release what it held. */
  constructor(
    private readonly scheduler: Scheduler,
    private readonly features: ImageFeatureCache,
    private readonly failed: (r: Request, e: unknown) => void,
  ) {}

  /** Starts an encode for each request the scheduler holds back, once. */
  start(): void {
    for (const r of this.scheduler.needingFeatures) if (!this.jobs.has(r)) this.jobs.set(r, this.encode(r).finally(() => this.jobs.delete(r)));
  }

  get running(): boolean {
    return this.jobs.size > 0;
  }

  /** Resolves when one of the running encodes ends. */
  next(): Promise<void> {
    return Promise.race(this.jobs.values());
  }

  private async encode(r: Request): Promise<void> {
    try {
      await Promise.all(r.images.filter((img) => !img.features).map(async (img) => {
        const buffer = await img.encode!();
        if (r.finished) this.features.release(img.key); // aborted meanwhile: its other images are released already
        else this.scheduler.provideFeatures(r, img, buffer);
      }));
    } catch (e) {
      if (r.finished) return;
      this.scheduler.finish(r, 'abort');
      this.failed(r, e);
    }
  }
}
