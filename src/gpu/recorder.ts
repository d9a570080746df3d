import type { Gpu } from './context.ts';
import type { Uniforms } from './uniforms.ts';
import type { GpuTimer } from './timestamps.ts';

/**
 * Records many kernel dispatches into one compute pass and submits them
 * together: a submit costs ~2 ms in Chromium, so a decode step is one
 * submit, not one per kernel.
 *
 * Binding convention for every kernel in shaders/: @group(0) @binding(0) is
 * the uniform struct (when the kernel has one), storage buffers follow at
 * @binding(1), (2), ... in the order the wrapper lists them.
 *
 * Each dispatch is its own usage scope inside a compute pass, so a kernel
 * reads what the previous one wrote without extra barriers.
 */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

const UNIFORM_ALIGN = 256;

export class CommandRecorder {
  private encoder: GPUCommandEncoder;
  private uniformChunks: ArrayBuffer[] = [];
  private uniformBuffers: GPUBuffer[] = [];
  private pending: { pipeline: GPUComputePipeline; bindings: Binding[]; uniformSlot: number; uniformSize: number; groups: [number, number, number] }[] = [];
  dispatches = 0;

  constructor(
    readonly gpu: Gpu,
    private readonly label = 'step',
    private readonly timer?: GpuTimer,
  ) {
    this.encoder = gpu.device.createCommandEncoder({ label });
    gpu.device.pushErrorScope('validation');
  }

  /**
   * Queues one dispatch. `groups` is the workgroup count; use `grid()` for
   * 1-D counts that may exceed the 65535 per-dimension limit.
   */
  dispatch(pipeline: GPUComputePipeline, bindings: Binding[], uniforms: Uniforms | null, groups: number | [number, number?, number?]): void {
    const g = typeof groups === 'number' ? grid(groups) : groups;
    const dims: [number, number, number] = [g[0], g[1] ?? 1, g[2] ?? 1];
    if (dims.some((d) => d === 0)) return;
    let uniformSlot = -1;
    let uniformSize = 0;
    if (uniforms) {
      const bytes = uniforms.bytes();
      uniformSlot = this.uniformChunks.length;
      uniformSize = bytes.byteLength;
      this.uniformChunks.push(bytes);
    }
    this.pending.push({ pipeline, bindings, uniformSlot, uniformSize, groups: dims });
    this.dispatches++;
  }

  /** Copies between buffers; ends the current pass and starts a new one after. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.flushPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /**
   * Encodes everything and submits. Resolves when the GPU is done; rejects
   * with the validation message if any command was invalid, so a bad
   * dispatch is an error at its call site, not a silent no-op.
   */
  async submit(): Promise<void> {
    this.flushPass();
    if (this.timer) this.timer.resolve(this.encoder);
    this.gpu.device.queue.submit([this.encoder.finish()]);
    const error = this.gpu.device.popErrorScope();
    const used = this.uniformBuffers;
    this.uniformBuffers = [];
    await this.gpu.device.queue.onSubmittedWorkDone();
    used.forEach((b) => this.gpu.destroyBuffer(b));
    const e = await error;
    if (e) throw new Error(`WebGPU rejected '${this.label}': ${e.message}`);
  }

  private flushPass(): void {
    if (this.pending.length === 0) return;
    const ubuf = this.writeUniforms();
    const desc: GPUComputePassDescriptor = { label: this.label };
    const timestampWrites = this.timer?.passWrites();
    if (timestampWrites) desc.timestampWrites = timestampWrites; // dawn.node misreads an explicit undefined
    const pass = this.encoder.beginComputePass(desc);
    for (const d of this.pending) {
      const entries: GPUBindGroupEntry[] = [];
      if (d.uniformSlot >= 0) {
        entries.push({ binding: 0, resource: { buffer: ubuf!, offset: d.uniformSlot * UNIFORM_ALIGN, size: d.uniformSize } });
      }
      let binding = 1;
      for (const b of d.bindings) {
        entries.push({ binding: binding++, resource: bufferBinding(b) });
      }
      const group = this.gpu.device.createBindGroup({ layout: d.pipeline.getBindGroupLayout(0), entries });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(...d.groups);
    }
    pass.end();
    this.pending = [];
  }

  private writeUniforms(): GPUBuffer | null {
    if (this.uniformChunks.length === 0) return null;
    const bytes = new Uint8Array(this.uniformChunks.length * UNIFORM_ALIGN);
    this.uniformChunks.forEach((c, i) => bytes.set(new Uint8Array(c), i * UNIFORM_ALIGN));
    const buf = this.gpu.createBuffer(`uniforms:${this.label}`, bytes.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.gpu.device.queue.writeBuffer(buf, 0, bytes);
    this.uniformChunks = [];
    this.uniformBuffers.push(buf);
    return buf;
  }
}

/** dawn.node may misread explicit `undefined` members, so leave absent keys out. */
function bufferBinding(b: Binding): GPUBufferBinding {
  if (!('buffer' in b)) return { buffer: b };
  const r: GPUBufferBinding = { buffer: b.buffer, offset: b.offset ?? 0 };
  if (b.size !== undefined) r.size = b.size;
  return r;
}

/** Splits a 1-D workgroup count over x and y when it exceeds 65535; kernels
 * recover the linear index as `wid.x + wid.y * nwg.x`. */
export function grid(workgroups: number): [number, number, number] {
  const max = 65535;
  if (workgroups <= max) return [workgroups, 1, 1];
  const y = Math.ceil(workgroups / max);
  return [Math.ceil(workgroups / y), y, 1];
}
