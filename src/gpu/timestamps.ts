import type { Gpu } from './context.ts';

/** GPU time of one compute pass; with `perDispatch`, of one kernel (its pipeline's label). */
export interface PassTime {
  label: string;
  ms: number;
}

/**
 * GPU time of compute passes, from timestamp queries where the adapter has
 * them. Each recorded pass writes a begin/end pair; `read()` returns the sum
 * of pass durations in milliseconds. Returns null on adapters without
 * 'timestamp-query' so callers fall back to wall clock.
 *
 * `perDispatch` asks the recorder for one pass per dispatch, so `readPasses()`
 * gives each kernel's own time (a profile: the extra passes cost a little, so
 * totals from it run slightly above a normal step's).
 */
export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuf: GPUBuffer;
  private readonly readBuf: GPUBuffer;
  private used = 0;
  private labels: string[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly capacity: number,
    readonly perDispatch: boolean,
  ) {
    this.querySet = gpu.device.createQuerySet({ type: 'timestamp', count: capacity * 2 });
    this.resolveBuf = gpu.createBuffer('timer', capacity * 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
    this.readBuf = gpu.device.createBuffer({ size: capacity * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  static create(gpu: Gpu, passes = 64, opts: { perDispatch?: boolean } = {}): GpuTimer | null {
    return gpu.hasTimestamps ? new GpuTimer(gpu, passes, opts.perDispatch ?? false) : null;
  }

  passWrites(label = ''): GPUComputePassTimestampWrites | undefined {
    if (this.used >= this.capacity) return undefined;
    const i = this.used++;
    this.labels[i] = label;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  resolve(encoder: GPUCommandEncoder): void {
    if (this.used === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, this.used * 2, this.resolveBuf, 0);
    encoder.copyBufferToBuffer(this.resolveBuf, 0, this.readBuf, 0, this.used * 16);
  }

  /** Milliseconds of GPU time over all passes recorded since the last read. */
  async read(): Promise<number> {
    return (await this.readPasses()).reduce((s, p) => s + p.ms, 0);
  }

  /** Each pass recorded since the last read, in order, with its label and milliseconds. */
  async readPasses(): Promise<PassTime[]> {
    const n = this.used;
    this.used = 0;
    if (n === 0) return [];
    await this.readBuf.mapAsync(GPUMapMode.READ, 0, n * 16);
    const t = new BigInt64Array(this.readBuf.getMappedRange(0, n * 16));
    // a pair out of order (a clock reset) counts as 0 rather than as a negative time
    const passes = Array.from({ length: n }, (_, i) => ({ label: this.labels[i], ms: t[2 * i + 1] > t[2 * i] ? Number(t[2 * i + 1] - t[2 * i]) / 1e6 : 0 }));
    this.readBuf.unmap();
    return passes;
  }

  destroy(): void {
    this.querySet.destroy();
    this.gpu.destroyBuffer(this.resolveBuf);
    this.readBuf.destroy();
  }
}
