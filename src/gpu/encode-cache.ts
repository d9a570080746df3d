import type { Gpu } from './context.ts';

/**
 * What a recorder can reuse from one submit to the next of the same shape:
 * one uniform buffer and the bind groups that point into it. A decode step of
 * SmolLM2-135M records ~370 dispatches; without this every step created a
 * uniform buffer and ~370 bind groups (issue 17, part 4).
 *
 * Reusing the uniform buffer is safe without waiting for the GPU because
 * queue.writeBuffer is ordered with submits on the queue: the next step's
 * uniforms land after the previous step's kernels have read theirs. A bind
 * group names buffers, offsets and sizes, never contents, so the same slice
 * of the same buffer reuses it. The owner (one per model) keeps its cache
 * for its lifetime and destroys it with itself.
 */
export class EncodeCache {
  private uniformBuffer: GPUBuffer | null = null;
  private readonly groups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;

  constructor(
    private readonly gpu: Gpu,
    private readonly label: string,
    /** Oldest bind groups are dropped past this many (buffers replaced over time leave dead entries). */
    private readonly maxGroups = 4096,
  ) {}

  /** Writes `bytes` at offset 0 of the shared uniform buffer (grown when too small) and returns it. */
  uniforms(bytes: Uint8Array<ArrayBuffer>): GPUBuffer {
    if (!this.uniformBuffer || this.uniformBuffer.size < bytes.byteLength) {
      // destroy() waits for submitted work that still reads the old buffer; its bind groups go with it
      if (this.uniformBuffer) this.gpu.destroyBuffer(this.uniformBuffer);
      this.groups.clear();
      this.uniformBuffer = this.gpu.createBuffer(`uniforms:${this.label}`, 2 ** Math.ceil(Math.log2(Math.max(bytes.byteLength, 4096))), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    }
    this.gpu.device.queue.writeBuffer(this.uniformBuffer, 0, bytes);
    return this.uniformBuffer;
  }

  /** The bind group of `pipeline` over `entries` (buffer bindings only), created once per distinct set. */
  bindGroup(pipeline: GPUComputePipeline, entries: { binding: number; resource: GPUBufferBinding }[]): GPUBindGroup {
    let key = String(this.id(pipeline));
    for (const e of entries) key += `|${e.binding}:${this.id(e.resource.buffer)}@${e.resource.offset ?? 0}+${e.resource.size ?? '*'}`;
    let group = this.groups.get(key);
    if (!group) {
      group = this.gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      if (this.groups.size >= this.maxGroups) this.groups.delete(this.groups.keys().next().value!);
      this.groups.set(key, group);
    }
    return group;
  }

  get cachedGroups(): number {
    return this.groups.size;
  }

  destroy(): void {
    if (this.uniformBuffer) this.gpu.destroyBuffer(this.uniformBuffer);
    this.uniformBuffer = null;
    this.groups.clear();
  }

  private id(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) this.ids.set(o, (id = this.nextId++));
    return id;
  }
}
