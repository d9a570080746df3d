/** The KV cache an engine keeps across requests, by tier: what it holds, and a way to empty the stored one. */

/** One entry of the persistent (stored) tier: a prefix page. */
export interface StoredCacheEntry {
  key: string;
  modelId: string;
  tokens: number;
  bytes: number;
  /** Milliseconds since the epoch. */
  created: number;
  lastUsed: number;
}

export interface CacheUsage {
  gpu: { pages: number; cachedPages: number; bytes: number };
  cpu: { pages: number; bytes: number; budgetBytes: number } | null;
  stored: { entries: number; bytes: number; budgetBytes: number; backend: 'indexeddb' | 'memory' } | null;
}

export interface EngineCache {
  /** Entries of the stored tier for this engine's model (empty without `persist`). */
  list(): Promise<StoredCacheEntry[]>;
  /** Deletes this model's stored entries; resolves with how many there were. */
  clear(): Promise<number>;
  usage(): Promise<CacheUsage>;
}
