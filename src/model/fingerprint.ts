/**
 * A model's identity for cache keys that outlive the tab (the prefix cache's
 * namespace): SHA-256 over its config and its weights — names, dtypes,
 * shapes and bytes. Weights of up to FULL_HASH_BYTES are hashed whole; larger
 * ones by a fixed sample of every tensor (first, last and evenly spaced
 * 4 KiB windows), which any retraining or fine-tune changes, so that a load
 * does not pay a full pass over hundreds of MB.
 */
import type { ModelConfig } from './config.ts';
import { numel, type CpuTensor } from './weights-cpu.ts';

const FULL_HASH_BYTES = 64 * 2 ** 20;
const WINDOW = 4096;
const WINDOWS_PER_TENSOR = 16;

export interface ModelFingerprint {
  /** Hex SHA-256. */
  hash: string;
  /** Elements over all decoder tensors (a parameter count, whatever the dtype). */
  parameters: number;
}

export async function modelFingerprint(config: ModelConfig, weights: ReadonlyMap<string, CpuTensor>): Promise<ModelFingerprint> {
  const names = [...weights.keys()].sort();
  let bytes = 0;
  let parameters = 0;
  for (const n of names) {
    bytes += weights.get(n)!.data.byteLength;
    parameters += numel(weights.get(n)!.shape);
  }
  const whole = bytes <= FULL_HASH_BYTES;
  const parts: Uint8Array[] = [utf8(JSON.stringify({ config, whole }))];
  for (const n of names) {
    const t = weights.get(n)!;
    parts.push(utf8(JSON.stringify([n, t.dtype, t.shape])));
    const b = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    parts.push(...(whole ? [b] : sample(b)));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  const digest = await crypto.subtle.digest('SHA-256', all);
  return { hash: Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, '0')).join(''), parameters };
}

function sample(b: Uint8Array): Uint8Array[] {
  if (b.length <= WINDOW * WINDOWS_PER_TENSOR) return [b];
  const step = (b.length - WINDOW) / (WINDOWS_PER_TENSOR - 1);
  return Array.from({ length: WINDOWS_PER_TENSOR }, (_, i) => {
    const at = Math.floor(i * step);
    return b.subarray(at, at + WINDOW);
  });
}

function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}
