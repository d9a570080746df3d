/**
 * Where the persistent KV tier keeps its bytes: two key-value stores, one
 * for manifests (small, listed whole at start-up) and one for page data
 * (read by key only). IndexedDB through idb-keyval in browsers and Workers;
 * a Map in this thread for tests and for runtimes without IndexedDB
 * (`memory`, shared by name so two engines in one process see one store,
 * as two sessions of one browser profile do).
 */
import { createStore, delMany, entries, getMany, keys, setMany, type UseStore } from 'idb-keyval';

export interface KvStoreBackend {
  readonly kind: 'indexeddb' | 'memory';
  manifests(): Promise<[string, unknown][]>;
  dataKeys(): Promise<string[]>;
  getData(keys: string[]): Promise<(ArrayBuffer | undefined)[]>;
  /** Writes all or nothing (one transaction); rejects with the store's error (QuotaExceededError, AbortError). */
  setData(entries: [string, ArrayBuffer][]): Promise<void>;
  setManifests(entries: [string, unknown][]): Promise<void>;
  delManifests(keys: string[]): Promise<void>;
  delData(keys: string[]): Promise<void>;
}

/** The IndexedDB databases `${name}-manifests` and `${name}-data` (each one object store). */
export function indexedDbBackend(name: string): KvStoreBackend {
  if (typeof indexedDB === 'undefined') throw new Error("persist.store 'indexeddb' needs IndexedDB, which this runtime lacks: use store 'memory' or drop persist");
  const m: UseStore = createStore(`${name}-manifests`, 'manifests');
  const d: UseStore = createStore(`${name}-data`, 'data');
  return {
    kind: 'indexeddb',
    manifests: () => entries<string, unknown>(m),
    dataKeys: () => keys<string>(d),
    getData: (ks) => getMany<ArrayBuffer>(ks, d),
    setData: (es) => setMany(es, d),
    setManifests: (es) => setMany(es, m),
    delManifests: (ks) => delMany(ks, m),
    delData: (ks) => delMany(ks, d),
  };
}

/** A memory backend's maps, exposed so tests can corrupt, truncate or drop what it holds. */
export interface MemoryStore {
  manifests: Map<string, unknown>;
  data: Map<string, ArrayBuffer>;
  /** Errors the next setData / setManifests calls reject with, one per call (a full disk, an aborted transaction); null lets that call through. */
  failWrites: (Error | null)[];
}

const memoryStores = new Map<string, MemoryStore>();

export function memoryStore(name: string): MemoryStore {
  let s = memoryStores.get(name);
  if (!s) memoryStores.set(name, (s = { manifests: new Map(), data: new Map(), failWrites: [] }));
  return s;
}

export function memoryBackend(name: string): KvStoreBackend {
  const s = memoryStore(name);
  const fail = () => {
    const e = s.failWrites.shift();
    if (e) throw e;
  };
  return {
    kind: 'memory',
    manifests: async () => [...s.manifests].map(([k, v]) => [k, structuredClone(v)] as [string, unknown]),
    dataKeys: async () => [...s.data.keys()],
    getData: async (ks) => ks.map((k) => s.data.get(k)?.slice(0)),
    setData: async (es) => {
      fail();
      for (const [k, v] of es) s.data.set(k, v.slice(0));
    },
    setManifests: async (es) => {
      fail();
      for (const [k, v] of es) s.manifests.set(k, structuredClone(v));
    },
    delManifests: async (ks) => ks.forEach((k) => s.manifests.delete(k)),
    delData: async (ks) => ks.forEach((k) => s.data.delete(k)),
  };
}
