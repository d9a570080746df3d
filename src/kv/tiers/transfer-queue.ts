/**
 * TransferQueue: the page copies a step owes the tiers, recorded while the
 * scheduler plans (no GPU there) and carried out by the executor at the very
 * start of the step, in this order:
 *
 *   1. downloads — pages whose contents must be saved before anything
 *      overwrites them (cached pages the pool hands out again; pages of a
 *      sequence being swapped out): one batched copy, submitted first
 *   2. uploads   — contents going into freshly allocated pages (a prefix hit
 *      in the CPU tier; a sequence swapped back in): queued after the
 *      downloads, before the step's kernels
 *
 * So a page freed and reused within one plan is saved before it is written,
 * and what is uploaded is there before any kernel reads it.
 */
export interface PendingDownload {
  page: number;
  /** Called with the page's bytes (every layer) once they are in memory. */
  done(data: ArrayBuffer): void;
}

export interface PendingUpload {
  page: number;
  data: ArrayBuffer;
}

export class TransferQueue {
  private downloads: PendingDownload[] = [];
  private uploads: PendingUpload[] = [];

  download(page: number, done: (data: ArrayBuffer) => void): void {
    this.downloads.push({ page, done });
  }

  upload(page: number, data: ArrayBuffer): void {
    this.uploads.push({ page, data });
  }

  /** What the next step must move, downloads first; the queue is empty afterwards. */
  drain(): { downloads: PendingDownload[]; uploads: PendingUpload[] } {
    const out = { downloads: this.downloads, uploads: this.uploads };
    this.downloads = [];
    this.uploads = [];
    return out;
  }

  get isEmpty(): boolean {
    return this.downloads.length === 0 && this.uploads.length === 0;
  }
}
