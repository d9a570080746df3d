import type { Gpu } from '../gpu/context.ts';
import { storageBuffer, uploadBuffer } from '../gpu/buffers.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import { encodeKvScoreProtect } from '../gpu/kernels/kv-score-protect.ts';
import type { ModelConfig } from '../model/config.ts';
import type { KvPool } from '../kv/kv-pool.ts';
import type { KVCacheManager } from '../kv/kv-cache-manager.ts';
import { compactSequence } from '../kv/compaction.ts';
import { createPress, type Press } from '../kv/presses/index.ts';
import { keptPrefixSlots, type Request } from '../scheduler/request.ts';
import type { StepOutcome } from '../scheduler/step-plan.ts';

/**
 * The compress stage (FastCache): between a request's prefill and its first
 * decode step, its prompt KV goes through its press — scores on the GPU,
 * top-k per (layer, kv head), compaction into the front pages — and the
 * freed pages go back to the pool for other requests. Requests that reach
 * the stage together are compressed in one submit. The stage writes no
 * request state: it reports what it did, and the scheduler applies it.
 */
export type Compressed = StepOutcome['compressed'][number];

export interface CompressStage {
  /** Compresses each request's prompt KV (the KV manager records the compaction); returns those a press evicted from. */
  run(requests: readonly Request[]): Promise<Compressed[]>;
  /** Where a request's observation-window q|k|v go during its last prefill chunk. */
  captureFor(request: Request, rows: number): readonly GPUBuffer[];
  /** Forget a request (finished or aborted): its window buffers are freed. */
  drop(requestId: string): void;
}

export interface CompressStats {
  requests: number;
  evictedTokens: number;
  freedPages: number;
  ms: number;
}

export class PressCompressStage implements CompressStage {
  readonly stats: CompressStats = { requests: 0, evictedTokens: 0, freedPages: 0, ms: 0 };
  private readonly presses = new Map<string, Press>();
  private readonly windows = new Map<string, { rows: number; buffers: GPUBuffer[] }>();

  constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    private readonly pool: KvPool,
    private readonly kv: KVCacheManager,
    /** Presses the model brings beyond the built-in ones (its CCM), by name. */
    private readonly modelPresses: Readonly<Record<string, () => Press>> = {},
  ) {}

  /** Throws when press `name` cannot take this request (unknown, or a press with its own constraints: ccm). */
  check(name: string, ratio: number, region: 'image' | 'all' | 'range', imageRuns: number): void {
    this.press(name).check?.(ratio, region, imageRuns);
  }

  /** Whether `name` scores with the observation window's queries (throws for an unknown press). */
  needsQueries(name: string): boolean {
    return this.press(name).needsQueries;
  }

  captureFor(request: Request, rows: number): readonly GPUBuffer[] {
    this.drop(request.id);
    const qkvDim = (this.config.numHeads + 2 * this.config.numKvHeads) * this.config.headDim;
    const buffers = Array.from({ length: this.config.numLayers }, (_, l) => storageBuffer(this.gpu, `press:window${l}`, rows * qkvDim * 4));
    this.windows.set(request.id, { rows, buffers });
    return buffers;
  }

  drop(requestId: string): void {
    this.windows.get(requestId)?.buffers.forEach((b) => this.gpu.destroyBuffer(b));
    this.windows.delete(requestId);
  }

  async run(requests: readonly Request[]): Promise<Compressed[]> {
    const work = requests.filter((r) => this.hasWork(r));
    if (work.length === 0) { // most steps: no submit, no error scope (an empty submit still costs ~2 ms)
      requests.forEach((r) => this.drop(r.id));
      return [];
    }
    const t0 = performance.now();
    const rec = new CommandRecorder(this.gpu, 'compress');
    const scratch: GPUBuffer[] = [];
    const releases: (() => void)[] = [];
    const done: Compressed[] = [];
    try {
      for (const r of work) {
        const { evicted, freedPages, release } = this.encodeOne(rec, r, scratch);
        releases.push(release);
        done.push({ request: r, evictedTokens: evicted, freedPages });
      }
      await rec.submit();
    } finally {
      releases.forEach((f) => f());
      scratch.forEach((b) => this.gpu.destroyBuffer(b));
      requests.forEach((r) => this.drop(r.id));
    }
    this.stats.ms += performance.now() - t0;
    return done;
  }

  /** Whether a request's press would evict anything. */
  private hasWork(r: Request): boolean {
    const spec = r.compression;
    if (!spec || spec.press === 'none' || spec.ratio <= 0 || !this.kv.has(r.id)) return false;
    const { evict, n } = this.plan(r);
    return evict > 0 && evict < n && (!this.press(spec.press).needsQueries || this.windows.has(r.id));
  }

  /** Tokens cached, the compressible region, and how many of them go. */
  private plan(r: Request): { n: number; start: number; end: number; evict: number } {
    const spec = r.compression!;
    const n = this.kv.numTokens(r.id);
    const start = Math.min(spec.region?.start ?? 0, n);
    const end = Math.min(spec.region?.end ?? n, n);
    if (!spec.prefix) {
      const press = this.press(spec.press);
      return { n, start, end, evict: press.evictions ? press.evictions(end - start, spec.ratio) : Math.floor((end - start) * spec.ratio) };
    }
    return { n, start, end, evict: n - keptPrefixSlots(n, spec.ratio, this.pool.pageSize) }; // the region is the whole prefix: n = end
  }

  /** Encodes one request's scoring and compaction (hasWork(r) holds); returns what it evicts and the cleanup to run after the submit. */
  private encodeOne(rec: CommandRecorder, r: Request, scratch: GPUBuffer[]): { evicted: number; freedPages: number; release: () => void } {
    const c = this.config;
    const { n, start, end, evict } = this.plan(r);
    const press = this.press(r.compression!.press);
    const window = this.windows.get(r.id);
    const blockTable = uploadBuffer(this.gpu, 'press:block_table', Uint32Array.from(this.kv.blockTable(r.id)));
    scratch.push(blockTable);
    const scores = Array.from({ length: c.numLayers }, (_, l) => storageBuffer(this.gpu, `press:scores${l}`, c.numKvHeads * n * 4));
    scratch.push(...scores);
    const qkvDim = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
    for (let l = 0; l < c.numLayers; l++) {
      press.encodeScores({
        rec, layer: l, pool: this.pool.layer(l), blockTable, numTokens: n, numKvHeads: c.numKvHeads, numHeads: c.numHeads,
        headDim: c.headDim, pageSize: this.pool.pageSize, dtype: this.pool.dtype, out: scores[l],
        region: { start, end }, blockTableIds: this.kv.blockTable(r.id), scratch,
        ...(press.needsQueries && window ? { queries: { buffer: window.buffers[l], window: window.rows, rowStride: qkvDim, offset: 0 } } : {}),
      });
      if (start > 0 || end < n) encodeKvScoreProtect(rec, { scores: scores[l], numKvHeads: c.numKvHeads, numTokens: n, start, end });
    }
    const res = compactSequence(rec, { pool: this.pool, kv: this.kv, seqId: r.id, scoresPerLayer: scores, keep: n - evict });
    this.stats.requests++;
    this.stats.evictedTokens += res.positionOffset;
    this.stats.freedPages += res.freedPages.length;
    return { evicted: res.positionOffset, freedPages: res.freedPages.length, release: res.release };
  }

  /** Frees every window and the presses' scratch buffers (engine shutdown, after the last submit). */
  dispose(): void {
    for (const id of [...this.windows.keys()]) this.drop(id);
    this.presses.forEach((p) => p.destroy?.());
    this.presses.clear();
  }

  private press(name: string): Press {
    let p = this.presses.get(name);
    if (!p) {
      const own = this.modelPresses[name];
      p = own ? own() : createPress(name);
      this.presses.set(name, p);
    }
    return p;
  }
}
