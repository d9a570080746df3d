/**
 * What the engine knows about its GPU device: whether it was lost, and the
 * one rebuild under way (after a loss, or asked for by `reload()`). Requests
 * sent while it runs wait for it; a rebuild that fails leaves the engine
 * lost, so the next request tries again.
 */
import type { DeviceStats } from '../api/stats.ts';

export class DeviceHealth {
  private readonly counts: DeviceStats = { losses: 0, stoppedRequests: 0, recoveries: 0, reloads: 0, lastRebuildMs: null };
  private lostMessage: string | null = null;
  private rebuilding: Promise<void> | null = null;

  /** Records a loss; returns the message requests in flight end with. */
  lost(reason: string, inFlight: number): string {
    this.counts.losses++;
    this.counts.stoppedRequests += inFlight;
    this.lostMessage = `the GPU device was lost (${reason}): this request was stopped; the engine reloads the model on the next request`;
    return this.lostMessage;
  }

  /** The device was lost and no rebuild is running. */
  get needsRebuild(): boolean {
    return this.lostMessage !== null && this.rebuilding === null;
  }

  /** Why a request cannot be submitted right now (the engine is lost or rebuilding), or null. */
  get blocked(): string | null {
    if (this.rebuilding) return 'the engine is reloading its model (after a lost GPU device, or reload()): send the request again when it is done';
    if (this.lostMessage) return 'the GPU device was lost: prepare the request again (prepare() reloads the model first), or call reload()';
    return null;
  }

  /** Runs `build` (it returns its duration in ms) unless one is running already; both callers see its outcome. */
  rebuild(build: () => Promise<number>): Promise<void> {
    this.rebuilding ??= (async () => {
      const afterLoss = this.lostMessage !== null;
      try {
        this.counts.lastRebuildMs = await build();
        this.counts[afterLoss ? 'recoveries' : 'reloads']++;
        this.lostMessage = null;
      } catch (e) {
        throw new Error(`${afterLoss ? 'the GPU device was lost and ' : ''}reloading the model failed: ${(e as Error).message}`);
      } finally {
        this.rebuilding = null;
      }
    })();
    return this.rebuilding;
  }

  /** Resolves when no rebuild is running (rejects if the one running fails). */
  settled(): Promise<void> {
    return this.rebuilding ?? Promise.resolve();
  }

  stats(): DeviceStats {
    return { ...this.counts };
  }
}
