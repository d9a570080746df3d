import { MemoryTracker } from './memory.ts';
import { PipelineCache } from './pipelines.ts';

/**
 * Everything a kernel needs from the device: the device itself, the
 * pipeline cache, the memory tracker and what the adapter can do.
 * One per GPUDevice; created by `acquireGpu`.
 */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  description: string;
  device: string;
}

export class Gpu {
  readonly pipelines: PipelineCache;
  readonly memory = new MemoryTracker();
  readonly hasTimestamps: boolean;
  readonly hasSubgroups: boolean;
  readonly hasF16: boolean;
  /** Why the device was lost (null while it is usable); set when `device.lost` resolves. */
  lostReason: string | null = null;
  /** Resolves when the device is lost (for any reason, `destroy()` included). */
  readonly lost: Promise<GPUDeviceLostInfo>;

  constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterSummary,
    /** A new device like this one, for recovery after a loss (set by `acquireGpu`; null: cannot). */
    readonly reacquire: (() => Promise<Gpu>) | null = null,
  ) {
    this.lost = device.lost.then((info) => {
      this.lostReason = info.message || info.reason || 'unknown';
      return info;
    });
    this.pipelines = new PipelineCache(device);
    this.hasTimestamps = device.features.has('timestamp-query');
    this.hasSubgroups = device.features.has('subgroups');
    this.hasF16 = device.features.has('shader-f16');
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** Allocates a tracked buffer. Size is rounded up to a multiple of 4 (and at least 4). */
  createBuffer(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const bytes = Math.max(4, Math.ceil(size / 4) * 4);
    if (bytes > this.device.limits.maxBufferSize) {
      throw new RangeError(
        `buffer '${label}' needs ${bytes} bytes but this adapter allows at most ${this.device.limits.maxBufferSize}; use a smaller model or pool`,
      );
    }
    const buffer = this.device.createBuffer({ label, size: bytes, usage });
    this.memory.track(buffer, label);
    return buffer;
  }

  destroyBuffer(buffer: GPUBuffer): void {
    this.memory.release(buffer);
    buffer.destroy();
  }

  destroy(): void {
    this.device.destroy();
  }
}
