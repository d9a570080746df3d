/**
 * GPU memory accounting. WebGPU has no query for how much memory a device
 * uses, so every buffer this runtime allocates goes through `track` and is
 * counted here (current bytes, peak bytes, per-label totals).
 */
export interface MemorySnapshot {
  bytes: number;
  peakBytes: number;
  buffers: number;
  byLabel: Record<string, number>;
}

export class MemoryTracker {
  private live = new Map<GPUBuffer, { size: number; label: string }>();
  private current = 0;
  private peak = 0;

  track(buffer: GPUBuffer, label: string): void {
    this.live.set(buffer, { size: buffer.size, label });
    this.current += buffer.size;
    this.peak = Math.max(this.peak, this.current);
  }

  release(buffer: GPUBuffer): void {
    const entry = this.live.get(buffer);
    if (!entry) return;
    this.live.delete(buffer);
    this.current -= entry.size;
  }

  resetPeak(): void {
    this.peak = this.current;
  }

  snapshot(): MemorySnapshot {
    const byLabel: Record<string, number> = {};
    for (const { size, label } of this.live.values()) {
      const key = label.split(':')[0];
      byLabel[key] = (byLabel[key] ?? 0) + size;
    }
    return { bytes: this.current, peakBytes: this.peak, buffers: this.live.size, byLabel };
  }
}
