import type { Request } from '../scheduler/request.ts';

/**
 * The compress stage runs between a request's prefill and its first decode
 * step, batched over the requests that reached it (FastCache). Until KV
 * presses land it passes requests through unchanged.
 */
export interface CompressStage {
  run(requests: Request[]): Promise<void>;
}

export const passThroughCompression: CompressStage = {
  async run(requests) {
    for (const r of requests) r.compressed = true;
  },
};
