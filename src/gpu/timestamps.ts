import type { Gpu } from './context.ts';

/**
 * GPU time of compute passes, from timestamp queries where the adapter has
 * them. Each recorded pass writes a begin/end pair; `read()` returns the sum
 * of pass durations in milliseconds. Returns null on adapters without
 * 'timestamp-query' so callers fall back to wall clock.
 */
export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuf: GPUBuffer;
  private readonly readBuf: GPUBuffer;
  private used = 0;

  private constructor(
    private readonly gpu: Gpu,
    private readonly capacity: number,
  ) {
    this.querySet = gpu.device.createQuerySet({ type: 'timestamp', count: capacity * 2 });
    this.resolveBuf = gpu.createBuffer('timer', capacity * 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
    this.readBuf = gpu.device.createBuffer({ size: capacity * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  static create(gpu: Gpu, passes = 64): GpuTimer | null {
    return gpu.hasTimestamps ? new GpuTimer(gpu, passes) : null;
  }

  passWrites(): GPUComputePassTimestampWrites | undefined {
    if (this.used >= this.capacity) return undefined;
    const i = this.used++;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  resolve(encoder: GPUCommandEncoder): void {
    if (this.used === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, this.used * 2, this.resolveBuf, 0);
    encoder.copyBufferToBuffer(this.resolveBuf, 0, this.readBuf, 0, this.used * 16);
  }

  /** Milliseconds of GPU time over all passes recorded since the last read. */
  async read(): Promise<number> {
    const n = this.used;
    this.used = 0;
    if (n === 0) return 0;
    await this.readBuf.mapAsync(GPUMapMode.READ, 0, n * 16);
    const t = new BigInt64Array(this.readBuf.getMappedRange(0, n * 16));
    let ns = 0n;
    for (let i = 0; i < n; i++) if (t[2 * i + 1] > t[2 * i]) ns += t[2 * i + 1] - t[2 * i];
    this.readBuf.unmap();
    return Number(ns) / 1e6;
  }

  destroy(): void {
    this.querySet.destroy();
    this.gpu.destroyBuffer(this.resolveBuf);
    this.readBuf.destroy();
  }
}
