/**
 * StoredExpansions: beside the stored KV pages, each image's prompt
 * expansion (the token ids its placeholder becomes: Idefics3's tile rows,
 * LLaVA's run of image tokens), by image key (content hash + processor
 * settings) within a KV namespace. With it, a new session that finds a
 * picture's KV in the store needs neither the vision encoder nor even the
 * decode: the prompt is built from the read bytes' hash alone.
 *
 * An expansion decides the prompt's ids, so a wrong one would change the
 * answer, not just miss: each record carries a SHA-256 of its namespace,
 * key and ids, checked before use; a record that fails is
 * deleted and the image decoded as if it had never been seen. Records are a
 * few hundred bytes; the newest MAX_RECORDS (any namespace) are kept.
 */
import type { KvStoreBackend } from './store-backend.ts';

const VERSION = 1;
const MAX_RECORDS = 1024;

interface ExpansionRecord {
  v: number;
  ns: string;
  key: string;
  ids: number[];
  sha256: string;
  lastUsed: number;
}

export class StoredExpansions {
  private readonly records = new Map<string, ExpansionRecord>();
  /** Keys put by this session: their records never came from storage (and may not be written yet), nothing to verify. */
  private readonly own = new Set<string>();
  private writing: Promise<void> = Promise.resolve();
  private failures = 0;

  private constructor(private readonly backend: KvStoreBackend, private readonly ns: string) {}

  /** Reads every record (they are small), collecting the malformed and the oldest past MAX_RECORDS. */
  static async open(backend: KvStoreBackend, ns: string): Promise<StoredExpansions> {
    const s = new StoredExpansions(backend, ns);
    const all = await backend.manifests();
    const good = all.filter((e): e is [string, ExpansionRecord] => isRecord(e[1]) && e[1].v === VERSION).sort(([, a], [, b]) => b.lastUsed - a.lastUsed);
    const keep = new Set(good.slice(0, MAX_RECORDS).map(([k]) => k));
    for (const [k, r] of good) if (keep.has(k) && r.ns === ns && k === s.storeKey(r.key)) s.records.set(r.key, r);
    await backend.delManifests(all.map(([k]) => k).filter((k) => !keep.has(k)));
    return s;
  }

  /** The verified expansion of `key`, or null (a record that fails verification is deleted). */
  async get(key: string): Promise<number[] | null> {
    const r = this.records.get(key);
    if (!r) return null;
    if (!this.own.has(key) && !(await this.verified(r, key))) {
      this.failures++;
      this.records.delete(key);
      this.enqueue(() => this.backend.delManifests([this.storeKey(key)]));
      return null;
    }
    r.lastUsed = Date.now();
    return r.ids.slice();
  }

  /** Keeps `ids` as the expansion of `key` (written in the background; a failed write is a later miss, never an error). */
  put(key: string, ids: readonly number[]): void {
    if (this.records.has(key)) return;
    const record = { v: VERSION, ns: this.ns, key, ids: [...ids], sha256: '', lastUsed: Date.now() };
    this.records.set(key, record);
    this.own.add(key);
    this.enqueue(async () => {
      record.sha256 = await digest(record);
      await this.backend.setManifests([[this.storeKey(key), record]]);
    });
  }

  /** Deletes this namespace's records. */
  async clear(): Promise<void> {
    await this.flush();
    const keys = [...this.records.keys()].map((k) => this.storeKey(k));
    this.records.clear();
    this.own.clear();
    await this.backend.delManifests(keys);
  }

  async flush(): Promise<void> {
    await this.writing;
  }

  /** Records here, and reads that failed verification. */
  stats(): { records: number; verifyFailures: number } {
    return { records: this.records.size, verifyFailures: this.failures };
  }

  private async verified(r: ExpansionRecord, key: string): Promise<boolean> {
    return r.ns === this.ns && r.key === key && (await digest(r)) === r.sha256;
  }

  private enqueue(task: () => Promise<void>): void {
    this.writing = this.writing.then(task).catch(() => undefined);
  }

  private storeKey(key: string): string {
    return `${this.ns}/${key}`;
  }
}

function isRecord(v: unknown): v is ExpansionRecord {
  const r = v as ExpansionRecord;
  return typeof r === 'object' && r !== null && typeof r.v === 'number' && typeof r.ns === 'string' && typeof r.key === 'string' && typeof r.sha256 === 'string' &&
    typeof r.lastUsed === 'number' && Array.isArray(r.ids) && r.ids.length > 0 && r.ids.every((x) => Number.isInteger(x) && x >= 0);
}

/** SHA-256 of a record's namespace, key and ids: a record moved to another key or namespace fails too. */
async function digest(r: Pick<ExpansionRecord, 'ns' | 'key' | 'ids'>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`${r.ns}|${r.key}|${r.ids.join(',')}`)));
  let s = '';
  for (const b of d) s += b.toString(16).padStart(2, '0');
  return s;
}
