import type { Gpu } from './context.ts';
import type { Uniforms } from './uniforms.ts';
import type { GpuTimer } from './timestamps.ts';
import type { EncodeCache } from './encode-cache.ts';

/**
 * Records many kernel dispatches and copies and submits them together: a
 * submit costs ~2 ms in Chromium, so a decode step is one submit, not one
 * per kernel.
 *
 * Recording touches no device state: `dispatch` and `copy` only queue plain
 * commands, and `submit()` does all device work (uniform buffer, encoder,
 * passes, bind groups) inside one validation error scope that it always
 * closes. So a throw while recording (a wrapper's shape guard) or while
 * encoding cannot leave the device's error-scope stack unbalanced or a
 * buffer behind, and a recorder dropped without submit costs nothing.
 *
 * Binding convention for every kernel in shaders/: @group(0) @binding(0) is
 * the uniform struct (when the kernel has one), storage buffers follow at
 * @binding(1), (2), ... in the order the wrapper lists them.
 *
 * Each run of dispatches between copies is one compute pass (one timestamp
 * pair with a `timer`; one pass per dispatch with a `perDispatch` timer, to
 * time each kernel); each dispatch is its own usage scope inside it, so a
 * kernel reads what the previous one wrote without extra barriers.
 */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Where a submit's host time went, ms: encoding up to and including queue.submit, then the wait (for the GPU, or for validation only when not `awaitGpu`). */
export interface SubmitPhases {
  encode: number;
  wait: number;
}

export interface SubmitOptions {
  phases?: SubmitPhases;
  /**
   * Wait for the GPU to finish (default true). A caller that maps a buffer
   * written by this submit right after can skip it: the map waits for the
   * same work, and a second wait costs a round trip per step.
   */
  awaitGpu?: boolean;
}

/** Uniform slices start on this (WebGPU's largest minUniformBufferOffsetAlignment). */
const UNIFORM_ALIGN = 256;

type Command =
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; bindings: Binding[]; uniforms: { offset: number; size: number } | null; groups: [number, number, number] }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };

export class CommandRecorder {
  private commands: Command[] = [];
  private uniformChunks: ArrayBuffer[] = [];
  private uniformBytes = 0;
  private submitted = false;
  dispatches = 0;

  constructor(
    readonly gpu: Gpu,
    private readonly label = 'step',
    private readonly timer?: GpuTimer,
    /** Reused uniform buffer and bind groups (the model's forward step); without one, each submit creates its own. */
    private readonly cache?: EncodeCache,
  ) {}

  /**
   * Queues one dispatch. `groups` is the workgroup count; use `grid()` for
   * 1-D counts that may exceed the 65535 per-dimension limit.
   */
  dispatch(pipeline: GPUComputePipeline, bindings: Binding[], uniforms: Uniforms | null, groups: number | [number, number?, number?]): void {
    this.assertOpen();
    const g = typeof groups === 'number' ? grid(groups) : groups;
    const dims: [number, number, number] = [g[0], g[1] ?? 1, g[2] ?? 1];
    if (dims.some((d) => d === 0)) return;
    let slice: { offset: number; size: number } | null = null;
    if (uniforms) {
      const bytes = uniforms.bytes();
      slice = { offset: this.uniformBytes, size: bytes.byteLength };
      this.uniformChunks.push(bytes);
      this.uniformBytes += Math.ceil(bytes.byteLength / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    }
    this.commands.push({ kind: 'dispatch', pipeline, bindings: [...bindings], uniforms: slice, groups: dims });
    this.dispatches++;
  }

  /** Queues a buffer-to-buffer copy; it ends the current compute pass, and dispatches after it start a new one. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.assertOpen();
    this.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  /**
   * Encodes everything and submits. Resolves when the GPU is done (or, with
   * `awaitGpu: false`, when the submit is validated); rejects
   * with the validation message if any command was invalid, so a bad
   * dispatch is an error at its call site, not a silent no-op. Everything up
   * to the queue submit runs before the first await, so queue writes made
   * after calling submit() land after this work.
   */
  async submit(opts: SubmitOptions = {}): Promise<void> {
    this.assertOpen();
    this.submitted = true;
    const t0 = performance.now();
    const device = this.gpu.device;
    let ownUniforms: GPUBuffer | null = null; // created for this submit (no cache): destroyed after it
    let error: Promise<GPUError | null>;
    device.pushErrorScope('validation');
    try {
      const uniformBuffer = this.writeUniforms();
      if (uniformBuffer && !this.cache) ownUniforms = uniformBuffer;
      const encoder = device.createCommandEncoder({ label: this.label });
      this.encode(encoder, uniformBuffer);
      if (this.timer) this.timer.resolve(encoder);
      device.queue.submit([encoder.finish()]);
      if (opts.phases) opts.phases.encode = performance.now() - t0;
    } catch (e) {
      if (ownUniforms) this.gpu.destroyBuffer(ownUniforms);
      throw e;
    } finally {
      error = device.popErrorScope();
      error.catch(() => {}); // on a throw above nobody awaits it
      this.commands = [];
      this.uniformChunks = [];
    }
    const t1 = performance.now();
    // destroy() after the submit is safe: the implementation keeps the buffer until the work using it is done
    if (ownUniforms) this.gpu.destroyBuffer(ownUniforms);
    if (opts.awaitGpu ?? true) await device.queue.onSubmittedWorkDone();
    const e = await error;
    if (opts.phases) opts.phases.wait = performance.now() - t1;
    if (e) throw new Error(`WebGPU rejected '${this.label}': ${e.message}`);
  }

  // ---------------------------------------------------------------- helpers

  private assertOpen(): void {
    if (this.submitted) throw new Error(`CommandRecorder '${this.label}': already submitted; record into a new recorder`);
  }

  /** One compute pass per run of dispatches; a copy ends the pass. */
  private encode(encoder: GPUCommandEncoder, uniformBuffer: GPUBuffer | null): void {
    let pass: GPUComputePassEncoder | null = null;
    for (const c of this.commands) {
      if (c.kind === 'copy') {
        pass?.end();
        pass = null;
        encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      if (pass && this.timer?.perDispatch) {
        pass.end();
        pass = null;
      }
      if (!pass) {
        const desc: GPUComputePassDescriptor = { label: this.label };
        const timestampWrites = this.timer?.passWrites(this.timer.perDispatch ? c.pipeline.label : this.label);
        if (timestampWrites) desc.timestampWrites = timestampWrites; // dawn.node misreads an explicit undefined
        pass = encoder.beginComputePass(desc);
      }
      const entries: { binding: number; resource: GPUBufferBinding }[] = [];
      if (c.uniforms) entries.push({ binding: 0, resource: { buffer: uniformBuffer!, offset: c.uniforms.offset, size: c.uniforms.size } });
      c.bindings.forEach((b, i) => entries.push({ binding: i + 1, resource: bufferBinding(b) }));
      pass.setPipeline(c.pipeline);
      pass.setBindGroup(0, this.cache ? this.cache.bindGroup(c.pipeline, entries) : this.gpu.device.createBindGroup({ layout: c.pipeline.getBindGroupLayout(0), entries }));
      pass.dispatchWorkgroups(...c.groups);
    }
    pass?.end();
  }

  /** All dispatches' uniforms in one buffer, each slice UNIFORM_ALIGN-aligned; written before the submit. */
  private writeUniforms(): GPUBuffer | null {
    if (this.uniformChunks.length === 0) return null;
    const bytes = new Uint8Array(this.uniformBytes);
    let offset = 0;
    for (const c of this.uniformChunks) {
      bytes.set(new Uint8Array(c), offset);
      offset += Math.ceil(c.byteLength / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    }
    if (this.cache) return this.cache.uniforms(bytes);
    const buf = this.gpu.createBuffer(`uniforms:${this.label}`, bytes.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.gpu.device.queue.writeBuffer(buf, 0, bytes);
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
