/**
 * PersistentTier: KV pages kept across reloads, tabs and browser restarts
 * (IndexedDB through idb-keyval; LMCache's disk tier, SGLang HiCache's
 * storage tier) — the tier below the CPU tier.
 *
 * An entry is one prefix-cache page: its bytes in the pool's own format
 * (src/gpu/kv-layout.ts) and a manifest naming everything that decides what
 * those bytes mean — the namespace parts (model id and hash, KV dtype, page
 * size, format version), the page key and the content string it was hashed
 * from, the page's index in its chain (its positions), the pool geometry,
 * the byte length and a SHA-256 of the bytes. Writes go in the background,
 * data first and the manifest last, so an entry without a manifest is never
 * read (its data is garbage-collected after the next open, once a grace
 * period has shown it is not another tab's write in flight). The data's key
 * ends in its checksum, so two tabs writing one page with different bytes
 * each pair their manifest with their own bytes: the last manifest wins and
 * the other data is an orphan, never a mismatch. A read checks the
 * manifest against the request and the bytes against the manifest before
 * anything reaches the GPU; any disagreement deletes the entry and counts
 * a verify failure — the page is then recomputed. A hit's `lastUsed` is
 * written back in the background, so the LRU order outlives the session.
 *
 * Space: a byte budget with LRU eviction (entries of other models first;
 * theirs unused for longer than a week are collected at open),
 * `navigator.storage.estimate()` consulted before each write batch, and on
 * QuotaExceededError or an aborted transaction the oldest entries go and the
 * write is retried once; if it fails again it is skipped and serving goes on.
 */
import { namespaceId, type KvNamespace } from '../prefix-key.ts';
import type { KvStoreBackend } from './store-backend.ts';
import type { StoredCacheEntry } from '../../api/cache.ts';
import { decodeStoredPage, encodeStoredPage, storedBytes, type StoreCodec } from './page-codec.ts';

/** Version of the manifest layout (the KV bytes' own version is the namespace's formatVersion). */
export const STORE_VERSION = 1;

export interface PageGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  pageSize: number;
  dtype: 'f32' | 'f16';
  bytesPerPage: number;
}

/** Which page: its key, the content string the key was hashed from, and its index in the chain (tokens index·P … index·P + P − 1). */
export interface StoredPageId {
  key: string;
  content: string;
  index: number;
}

/** Where published pages are written through to (the persistent tier), in the background. */
export interface PagePersister {
  has(key: string): boolean;
  put(id: StoredPageId, data: ArrayBuffer): void;
}

interface Manifest {
  v: number;
  ns: KvNamespace;
  key: string;
  content: string;
  index: number;
  positions: [number, number];
  geometry: Omit<PageGeometry, 'bytesPerPage'>;
  /** How the bytes are stored (page-codec.ts); byteLength is the page's size in the pool, chunks[0].bytes what is stored. */
  codec: StoreCodec;
  byteLength: number;
  chunks: { key: string; bytes: number; sha256: string }[];
  created: number;
  lastUsed: number;
}

export interface PersistentTierStats {
  backend: 'indexeddb' | 'memory';
  budgetBytes: number;
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  written: number;
  /** Write batches the store refused (QuotaExceededError, an aborted transaction), each followed by eviction and one retry. */
  refusedWrites: number;
  /** Writes that failed twice (quota, aborted transactions) or were dropped because too much was pending. */
  skippedWrites: number;
  verifyFailures: number;
  evicted: number;
  /** Entries of older formats, stale model versions and other models unused for too long, and broken manifests, removed at open; data no manifest names, removed after the grace period. */
  collected: number;
  /** navigator.storage.persist() granted (null where the runtime has no StorageManager). */
  persisted: boolean | null;
}

/** Timings of the tier's housekeeping (tests shorten them; `now`, the clock of `created`/`lastUsed` and their ages, makes them deterministic). */
export interface PersistentTierOptions {
  /** How long data without a manifest found at open is left alone before it is deleted (another tab may be between its data and its manifest). Default 10 s. */
  orphanGraceMs?: number;
  /** Other models' entries unused for longer than this are collected at open. Default 7 days. */
  foreignMaxAgeMs?: number;
  now?: () => number;
}

/** What `list()` reports per entry: the API's StoredCacheEntry. */
export type StoredEntryInfo = StoredCacheEntry;

const MAX_PENDING_BYTES = 32 * 2 ** 20;
/**
 * After evicting did not make a write fit, the store is taken as full for
 * this long: later refused writes are skipped without evicting more (a
 * browser reclaims deleted IndexedDB space only at compaction, so evicting
 * every entry would lose the cache and still not fit).
 */
const FULL_BACKOFF_MS = 30_000;
const ORPHAN_GRACE_MS = 10_000;
const FOREIGN_MAX_AGE_MS = 7 * 24 * 3600_000;

export class PersistentTier implements PagePersister {
  private readonly nsId: string;
  /** Ours, by page key; Map order is LRU (oldest first). */
  private readonly index = new Map<string, Manifest>();
  /** Other models' entries (store key → bytes): never read, evicted first. */
  private readonly foreign = new Map<string, Manifest>();
  private readonly pending = new Map<string, { id: StoredPageId; data: ArrayBuffer }>();
  private pendingBytes = 0;
  /** Hits whose new `lastUsed` is not stored yet (page key → manifest), written in one batch on the write chain. */
  private readonly touched = new Map<string, Manifest>();
  private touchQueued = false;
  private writing: Promise<void> = Promise.resolve();
  private readonly counts = { hits: 0, misses: 0, written: 0, refusedWrites: 0, skippedWrites: 0, verifyFailures: 0, evicted: 0, collected: 0 };
  private persisted: boolean | null = null;
  /** Until when a refused write skips without evicting (see FULL_BACKOFF_MS). */
  private fullUntil = 0;

  private constructor(
    private readonly backend: KvStoreBackend,
    private readonly ns: KvNamespace,
    private readonly geometry: PageGeometry,
    readonly budgetBytes: number,
    readonly codec: StoreCodec,
    private readonly options: Required<PersistentTierOptions>,
  ) {
    // entries of another codec are another namespace: a lossy page never answers for an exact one
    this.nsId = codec === 'pool' ? namespaceId(ns) : `${namespaceId(ns)}.${codec}`;
  }

  /** Opens the store: reads every manifest, collects what can never be used, asks for persistent storage. */
  static async open(backend: KvStoreBackend, ns: KvNamespace, geometry: PageGeometry, budgetBytes: number, codec: StoreCodec = 'pool', options: PersistentTierOptions = {}): Promise<PersistentTier> {
    if (typeof budgetBytes !== 'number' || !Number.isInteger(budgetBytes) || budgetBytes <= 0) {
      throw new RangeError(`persist.budgetBytes must be a positive integer number of bytes, got ${String(budgetBytes)}`);
    }
    if (codec !== 'pool' && codec !== 'int8') throw new RangeError(`persist.codec must be 'pool' or 'int8', got ${JSON.stringify(codec)}`);
    const o = { orphanGraceMs: ORPHAN_GRACE_MS, foreignMaxAgeMs: FOREIGN_MAX_AGE_MS, now: Date.now, ...options };
    for (const k of ['orphanGraceMs', 'foreignMaxAgeMs'] as const) {
      if (typeof o[k] !== 'number' || !(o[k] >= 0)) throw new RangeError(`PersistentTier: ${k} must be a non-negative number of milliseconds, got ${String(o[k])}`);
    }
    const t = new PersistentTier(backend, ns, geometry, budgetBytes, codec, o);
    const orphans = await t.load();
    t.persisted = await askPersist();
    t.collectLater(orphans);
    return t;
  }

  /** Queues a page for writing (in the background); a page stored or queued already is only marked used. */
  put(id: StoredPageId, data: ArrayBuffer): void {
    const known = this.index.get(id.key);
    if (known) return this.touch(known);
    if (this.pending.has(id.key)) return;
    if (data.byteLength !== this.geometry.bytesPerPage || this.pendingBytes + data.byteLength > MAX_PENDING_BYTES || data.byteLength > this.budgetBytes) {
      this.counts.skippedWrites++;
      return;
    }
    this.pending.set(id.key, { id, data });
    this.pendingBytes += data.byteLength;
    if (this.pending.size === 1) this.writing = this.writing.then(() => this.writePending()).catch(() => undefined); // a failed batch is counted, never thrown at the serving path
  }

  /** Whether a page is stored (or on its way). */
  has(key: string): boolean {
    return this.index.has(key) || this.pending.has(key);
  }

  /**
   * The verified bytes of the longest run of `ids` (in order) that is stored:
   * it stops at the first page that is missing or fails verification (that
   * one is deleted).
   */
  async getRun(ids: StoredPageId[]): Promise<ArrayBuffer[]> {
    const found: Manifest[] = [];
    for (const id of ids) {
      const m = this.index.get(id.key);
      if (!m || m.content !== id.content) break; // a different content under the key is a hash collision: a miss
      if (m.index !== id.index) {
        await this.reject(m);
        break;
      }
      found.push(m);
    }
    if (found.length === 0) {
      this.counts.misses += ids.length;
      return [];
    }
    const data = await this.backend.getData(found.map((m) => m.chunks[0].key)).catch(() => found.map(() => undefined));
    const out: ArrayBuffer[] = [];
    for (let i = 0; i < found.length; i++) {
      if (!(await this.verify(found[i], data[i]))) {
        await this.reject(found[i]);
        break;
      }
      out.push(decodeStoredPage(this.codecGeometry, this.codec, data[i]!));
      this.touch(found[i]);
    }
    this.counts.hits += out.length;
    this.counts.misses += ids.length - out.length;
    return out;
  }

  /** Waits for the queued writes (pages, `lastUsed` updates, a due orphan pass), and for any queued while waiting. */
  async flush(): Promise<void> {
    for (let w = this.writing; ; w = this.writing) {
      await w;
      if (w === this.writing) return;
    }
  }

  list(): StoredEntryInfo[] {
    return [...this.index.values()].map((m) => ({ key: m.key, modelId: m.ns.modelId, tokens: m.positions[1] - m.positions[0], bytes: m.chunks[0].bytes, created: m.created, lastUsed: m.lastUsed }));
  }

  /** Deletes every entry of this namespace (other models' stay). */
  async clear(): Promise<void> {
    await this.flush();
    const all = [...this.index.values()];
    this.index.clear();
    await this.remove(all);
  }

  stats(): PersistentTierStats {
    return { backend: this.backend.kind, budgetBytes: this.budgetBytes, entries: this.index.size, bytes: this.bytes(this.index), ...this.counts, persisted: this.persisted };
  }

  // ---------------------------------------------------------------- writing

  private async writePending(): Promise<void> {
    while (this.pending.size > 0) {
      const batch = [...this.pending.values()].slice(0, 64);
      try {
        const stored = batch.map((p) => ({ data: encodeStoredPage(this.codecGeometry, this.codec, p.data) }));
        const manifests = await Promise.all(batch.map((p, i) => this.manifest(p.id, stored[i].data)));
        const bytes = stored.reduce((n, p) => n + p.data.byteLength, 0);
        await this.makeRoom(bytes);
        const ok = (await this.tryWrite(stored, manifests)) || (Date.now() >= this.fullUntil && (await this.evictFor(bytes)) && (await this.tryWrite(stored, manifests)));
        if (!ok && Date.now() >= this.fullUntil) this.fullUntil = Date.now() + FULL_BACKOFF_MS;
        if (ok) {
          this.fullUntil = 0;
          for (const m of manifests) this.index.set(m.key, m);
          this.counts.written += batch.length;
        } else this.counts.skippedWrites += batch.length;
      } finally {
        for (const p of batch) {
          this.pending.delete(p.id.key);
          this.pendingBytes -= p.data.byteLength;
        }
      }
    }
  }

  /**
   * Data, then manifests: a crash in between leaves data without a manifest,
   * which is never read (and is collected at the next open); a refused
   * manifest write takes its data back out at once.
   */
  private async tryWrite(batch: { data: ArrayBuffer }[], manifests: Manifest[]): Promise<boolean> {
    const dataKeys = manifests.map((m) => m.chunks[0].key);
    try {
      await this.backend.setData(batch.map((p, i) => [dataKeys[i], p.data]));
    } catch {
      this.counts.refusedWrites++;
      return false; // QuotaExceededError, an aborted transaction, a closed database: the caller evicts and retries once, then skips
    }
    try {
      await this.backend.setManifests(manifests.map((m) => [this.manifestKey(m.key), m]));
      return true;
    } catch {
      this.counts.refusedWrites++;
      await this.backend.delData(dataKeys).catch(() => undefined);
      return false;
    }
  }

  /** Keeps the budget and the origin's quota: evicts before writing `bytes`. */
  private async makeRoom(bytes: number): Promise<void> {
    const over = this.bytes(this.index) + this.bytes(this.foreign) + bytes - this.budgetBytes;
    if (over > 0) await this.evictFor(over);
    const est = await estimate();
    if (est && est.quota - est.usage < bytes) await this.evictFor(bytes - (est.quota - est.usage));
  }

  /** Deletes the oldest entries (other models' first) until `bytes` are freed; false when nothing was left to delete. */
  private async evictFor(bytes: number): Promise<boolean> {
    const victims: Manifest[] = [];
    let freed = 0;
    for (const m of [...this.foreign.values(), ...this.index.values()]) {
      if (freed >= bytes) break;
      victims.push(m);
      freed += m.chunks[0].bytes;
    }
    for (const m of victims) (this.foreign.has(this.manifestKey(m.key, m)) ? this.foreign.delete(this.manifestKey(m.key, m)) : this.index.delete(m.key));
    this.counts.evicted += victims.length;
    await this.remove(victims).catch(() => undefined);
    return victims.length > 0;
  }

  private get codecGeometry() {
    const g = this.geometry;
    return { numLayers: g.numLayers, numKvHeads: g.numKvHeads, headDim: g.headDim, pageSize: g.pageSize, dtype: g.dtype };
  }

  /** `data`: the bytes as stored (after the codec). */
  private async manifest(id: StoredPageId, data: ArrayBuffer): Promise<Manifest> {
    const { bytesPerPage: _b, ...geometry } = this.geometry;
    const sum = await sha256(data); // in the data key too: another tab's different bytes for this page never land under our manifest
    const now = this.options.now();
    const P = this.geometry.pageSize;
    return {
      v: STORE_VERSION, ns: this.ns, key: id.key, content: id.content, index: id.index, positions: [id.index * P, id.index * P + P], geometry,
      codec: this.codec, byteLength: this.geometry.bytesPerPage, chunks: [{ key: `${this.manifestKey(id.key)}/${sum.slice(0, 16)}`, bytes: data.byteLength, sha256: sum }], created: now, lastUsed: now,
    };
  }

  // ---------------------------------------------------------------- reading and collecting

  /** Reads the manifests; collects broken and stale entries; returns the data keys no manifest names (collected later, see collectLater). */
  private async load(): Promise<string[]> {
    const stale: Manifest[] = [];
    const broken: string[] = [];
    const live = new Set<string>();
    const all = await this.backend.manifests();
    all.sort(([, a], [, b]) => lastUsedOf(a) - lastUsedOf(b));
    for (const [storeKey, value] of all) {
      if (!isManifest(value)) {
        broken.push(storeKey);
        continue;
      }
      const ours = this.idOf(value) === this.nsId;
      const sameModelOtherVersion = value.ns.modelId === this.ns.modelId && namespaceId(value.ns) !== namespaceId(this.ns);
      const unusedElsewhere = !ours && this.options.now() - value.lastUsed > this.options.foreignMaxAgeMs; // a model switched back to within the week keeps its cache
      if (value.v !== STORE_VERSION || value.ns.formatVersion < this.ns.formatVersion || sameModelOtherVersion || unusedElsewhere) {
        stale.push(value);
        continue;
      }
      for (const c of value.chunks) live.add(c.key);
      if (ours) this.index.set(value.key, value);
      else this.foreign.set(storeKey, value);
    }
    for (const m of stale) for (const c of m.chunks) live.add(c.key); // deleted with their manifests
    const orphans = (await this.backend.dataKeys()).filter((k) => !live.has(k));
    await this.backend.delManifests(broken);
    await this.remove(stale);
    this.counts.collected += broken.length + stale.length;
    return orphans;
  }

  /**
   * Data no manifest named at open is deleted only after the grace period,
   * and only if still no manifest names it: another tab may have been
   * between its data and its manifest. The pass runs on the write chain, so
   * this tier's own writes (which may reuse a key, same bytes) never
   * interleave with it.
   */
  private collectLater(orphans: string[]): void {
    if (orphans.length === 0) return;
    const timer: unknown = setTimeout(() => {
      this.writing = this.writing.then(() => this.collectOrphans(orphans)).catch(() => undefined);
    }, this.options.orphanGraceMs);
    if (typeof timer === 'object' && timer !== null && 'unref' in timer && typeof timer.unref === 'function') timer.unref(); // Node: a pending pass never holds the process open
  }

  private async collectOrphans(orphans: string[]): Promise<void> {
    const named = new Set((await this.backend.manifests()).flatMap(([, v]) => chunkKeysOf(v)));
    const gone = orphans.filter((k) => !named.has(k));
    await this.backend.delData(gone);
    this.counts.collected += gone.length;
  }

  /** The manifest agrees with this pool, and the bytes with the manifest. */
  private async verify(m: Manifest, data: ArrayBuffer | undefined): Promise<boolean> {
    const g = this.geometry;
    const shapes = m.geometry.numLayers === g.numLayers && m.geometry.numKvHeads === g.numKvHeads && m.geometry.headDim === g.headDim && m.geometry.pageSize === g.pageSize && m.geometry.dtype === g.dtype;
    const P = g.pageSize;
    const ok = shapes && m.byteLength === g.bytesPerPage && m.codec === this.codec && m.positions[0] === m.index * P && m.positions[1] === m.index * P + P &&
      data instanceof ArrayBuffer && data.byteLength === storedBytes(this.codecGeometry, this.codec) && m.chunks[0].bytes === data.byteLength && (await sha256(data)) === m.chunks[0].sha256;
    if (!ok) this.counts.verifyFailures++;
    return ok;
  }

  private async reject(m: Manifest): Promise<void> {
    this.index.delete(m.key);
    await this.remove([m]).catch(() => undefined);
  }

  /** Manifests first: once it is gone, nothing reads the data. */
  private async remove(ms: Manifest[]): Promise<void> {
    if (ms.length === 0) return;
    await this.backend.delManifests(ms.map((m) => this.manifestKey(m.key, m)));
    await this.backend.delData(ms.flatMap((m) => m.chunks.map((c) => c.key)));
  }

  private touch(m: Manifest): void {
    m.lastUsed = this.options.now();
    this.index.delete(m.key);
    this.index.set(m.key, m); // most recent last
    this.touched.set(m.key, m);
    if (this.touchQueued) return;
    this.touchQueued = true;
    this.writing = this.writing.then(() => this.writeTouched()).catch(() => undefined); // never awaited by a read
  }

  /**
   * Stores the touched manifests' `lastUsed` (one batch), so the next
   * session's LRU order is use order. Only entries still indexed as that
   * very manifest: one deleted, evicted or replaced meanwhile is not
   * written back. The check and the write's start are one synchronous step,
   * and deletions leave the index before they reach the store, so a
   * deletion issued first always wins. A failure only loses recency.
   */
  private async writeTouched(): Promise<void> {
    this.touchQueued = false;
    const live = [...this.touched.values()].filter((m) => this.index.get(m.key) === m);
    this.touched.clear();
    if (live.length > 0) await this.backend.setManifests(live.map((m) => [this.manifestKey(m.key), m])).catch(() => undefined);
  }

  private manifestKey(key: string, m: Pick<Manifest, 'ns' | 'codec'> | null = null): string {
    return `${m ? this.idOf(m) : this.nsId}/${key}`;
  }

  /** The store namespace of an entry: its KV namespace, and its codec when lossy. */
  private idOf(m: Pick<Manifest, 'ns' | 'codec'>): string {
    return m.codec === 'pool' ? namespaceId(m.ns) : `${namespaceId(m.ns)}.${m.codec}`;
  }

  private bytes(map: Map<string, Manifest>): number {
    let n = 0;
    for (const m of map.values()) n += m.chunks[0].bytes;
    return n;
  }
}

/** The data keys a stored manifest names, whatever its version (any it names is not an orphan). */
function chunkKeysOf(v: unknown): string[] {
  const chunks = (v as Partial<Manifest> | null)?.chunks;
  return Array.isArray(chunks) ? chunks.map((c: unknown) => (c as { key?: unknown } | null)?.key).filter((k): k is string => typeof k === 'string') : [];
}

function lastUsedOf(v: unknown): number {
  return typeof (v as Manifest)?.lastUsed === 'number' ? (v as Manifest).lastUsed : 0;
}

/** A manifest read back from storage has every field of the right type (anything else is collected). */
function isManifest(v: unknown): v is Manifest {
  const m = v as Manifest;
  const int = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  return typeof m === 'object' && m !== null && int(m.v) && (m.codec === 'pool' || m.codec === 'int8') && typeof m.key === 'string' && typeof m.content === 'string' && int(m.index) &&
    typeof m.ns === 'object' && m.ns !== null && typeof m.ns.modelId === 'string' && typeof m.ns.modelHash === 'string' && (m.ns.kvDtype === 'f32' || m.ns.kvDtype === 'f16') && int(m.ns.pageSize) && int(m.ns.formatVersion) &&
    Array.isArray(m.positions) && m.positions.length === 2 && m.positions.every(int) && typeof m.geometry === 'object' && m.geometry !== null && int(m.byteLength) &&
    Array.isArray(m.chunks) && m.chunks.length === 1 && typeof m.chunks[0]?.key === 'string' && int(m.chunks[0].bytes) && typeof m.chunks[0].sha256 === 'string' && int(m.created) && int(m.lastUsed);
}

async function sha256(data: ArrayBuffer): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  let s = '';
  for (const b of d) s += b.toString(16).padStart(2, '0');
  return s;
}

function storageManager(): StorageManager | null {
  return typeof navigator !== 'undefined' && navigator.storage && typeof navigator.storage.estimate === 'function' ? navigator.storage : null;
}

async function estimate(): Promise<{ usage: number; quota: number } | null> {
  const e = await storageManager()?.estimate().catch(() => null);
  return e && typeof e.quota === 'number' && typeof e.usage === 'number' ? { usage: e.usage, quota: e.quota } : null;
}

async function askPersist(): Promise<boolean | null> {
  const s = storageManager();
  if (!s || typeof s.persist !== 'function') return null;
  return s.persist().catch(() => false);
}
