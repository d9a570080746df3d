/**
 * The vision encoder: the model's ONNX export run by onnxruntime-web — on
 * the WebGPU execution provider sharing the engine's GPUDevice where the
 * runtime allows it (its output buffer is copied to ours on the GPU, no CPU
 * round trip), on the wasm provider otherwise (Node, or a WebGPU failure).
 * Its result is one f32 buffer of decoder-width feature rows per image
 * (LLaVA: after the projector, run by our kernels).
 */
import type * as Ort from 'onnxruntime-web';
import type { Gpu } from '../gpu/context.ts';
import { storageBuffer, uploadBuffer } from '../gpu/buffers.ts';
import type { ModelConfig } from './config.ts';
import type { ModelSource, FileProgress } from './source.ts';
import type { PreparedImage } from './multimodal-processor.ts';
import { VISION_ENCODER_FILES, type VisionSpec } from './vision-config.ts';
import { LlavaProjector } from './llava-projector.ts';
import type { CpuTensor } from './weights-cpu.ts';

type OrtModule = typeof Ort;
export type VisionBackend = 'webgpu' | 'wasm';

export interface VisionEncoderOptions {
  /**
   * 'auto' (default): WebGPU on the engine's device in a browser with a hardware adapter; wasm in
   * Node and on a CPU adapter (SwiftShader), where ORT's WebGPU EP measured ~20× slower than wasm
   * (4.5 s vs 0.2 s per 128-px image) and hung when several new images came at once.
   */
  backend?: VisionBackend | 'auto';
  /** A specific ONNX file (default: the first of onnx/vision_encoder{,_fp16,_int8,…}.onnx present). */
  file?: string;
  onProgress?: (p: FileProgress) => void;
}

export class VisionEncoder {
  /** Encoder runs so far (one per image not served from a cache). */
  calls = 0;

  private constructor(
    private readonly gpu: Gpu,
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    readonly backend: VisionBackend,
    private readonly hidden: number,
    private readonly projector: LlavaProjector | null,
  ) {}

  static async load(gpu: Gpu, source: ModelSource, spec: VisionSpec, config: ModelConfig, weights: Map<string, CpuTensor>, opts: VisionEncoderOptions = {}): Promise<VisionEncoder> {
    const file = opts.file ?? (await firstPresent(source, VISION_ENCODER_FILES));
    if (!file) throw new Error(`model ${source.id}: no vision encoder found (looked for ${VISION_ENCODER_FILES.join(', ')})`);
    const bytes = await source.readFile(file, opts.onProgress);
    const ort = await loadOrt();
    const backendOpt = opts.backend ?? 'auto';
    const wantGpu = backendOpt === 'webgpu' || (backendOpt === 'auto' && canShareDevice() && !isCpuAdapter(gpu));
    let session: Ort.InferenceSession | null = null;
    let backend: VisionBackend = 'wasm';
    if (wantGpu) {
      try {
        // the EP option `device` makes ORT run on our device, so its output buffer is ours to copy
        const ep = { name: 'webgpu', device: gpu.device } as unknown as Ort.InferenceSession.ExecutionProviderConfig;
        session = await ort.InferenceSession.create(bytes, { executionProviders: [ep], preferredOutputLocation: 'gpu-buffer' });
        backend = 'webgpu';
      } catch (e) {
        if (opts.backend === 'webgpu') throw new Error(`model ${source.id}: the vision encoder does not run on WebGPU here: ${(e as Error).message}`);
      }
    }
    session ??= await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] }).catch((e: Error) => {
      throw new Error(`model ${source.id}: ${file} is not a vision encoder onnxruntime-web can load: ${e.message}`);
    });
    if (!session.outputNames.includes('image_features')) {
      throw new Error(`model ${source.id}: ${file} has no 'image_features' output (outputs: ${session.outputNames.join(', ')})`);
    }
    const projector = spec.kind === 'llava' ? LlavaProjector.create(gpu, weights, spec.projectorAct ?? 'none') : null;
    return new VisionEncoder(gpu, ort, session, backend, config.hiddenSize, projector);
  }

  /**
   * Runs the encoder on one image: a new buffer f32 [image.numFeatures, hidden] the caller owns.
   * One call at a time, and none while other work uses the device (the engine serializes them).
   */
  async encode(image: PreparedImage): Promise<GPUBuffer> {
    const feeds: Record<string, Ort.Tensor> = { pixel_values: new this.ort.Tensor('float32', image.pixelValues.data, image.pixelValues.dims) };
    if (this.session.inputNames.includes('pixel_attention_mask')) {
      const m = image.pixelAttentionMask ?? { data: new Uint8Array(image.pixelValues.data.length / image.pixelValues.dims.at(-3)!).fill(1), dims: [...image.pixelValues.dims.slice(0, -3), ...image.pixelValues.dims.slice(-2)] };
      feeds.pixel_attention_mask = new this.ort.Tensor('bool', m.data, m.dims);
    }
    this.calls++;
    const out = (await this.session.run(feeds, ['image_features'])).image_features;
    try {
      const width = out.dims.at(-1)!;
      const rows = out.size / width;
      const expectWidth = this.projector ? this.projector.inDim : this.hidden;
      if (rows !== image.numFeatures || width !== expectWidth) {
        throw new Error(`the vision encoder gave [${out.dims.join(', ')}] features; the prompt needs ${image.numFeatures} rows of ${expectWidth}`);
      }
      const raw = await this.toBuffer(out, rows * width * 4);
      if (!this.projector) return raw;
      try {
        return await this.projector.project(raw, rows);
      } finally {
        this.gpu.destroyBuffer(raw);
      }
    } finally {
      out.dispose();
    }
  }

  destroy(): void {
    void this.session.release();
    this.projector?.destroy();
  }

  /** The output as one of our buffers: a GPU copy when ORT left it on our device, an upload otherwise. */
  private async toBuffer(t: Ort.Tensor, bytes: number): Promise<GPUBuffer> {
    if (t.location === 'gpu-buffer') {
      const buf = storageBuffer(this.gpu, 'vision:features', bytes);
      this.gpu.device.pushErrorScope('validation');
      const enc = this.gpu.device.createCommandEncoder();
      enc.copyBufferToBuffer(t.gpuBuffer as GPUBuffer, 0, buf, 0, bytes);
      this.gpu.device.queue.submit([enc.finish()]);
      const err = await this.gpu.device.popErrorScope();
      if (err) {
        this.gpu.destroyBuffer(buf);
        throw new Error(`copying the vision features failed: ${err.message}`);
      }
      return buf;
    }
    return uploadBuffer(this.gpu, 'vision:features', (await t.getData()) as Float32Array);
  }
}

async function firstPresent(source: ModelSource, files: readonly string[]): Promise<string | undefined> {
  for (const f of files) if (await source.has(f)) return f;
  return undefined;
}

/**
 * onnxruntime-web with its wasm files served from here, never from a CDN
 * (transformers.js points them at one, and resizes Idefics3 images with it).
 */
export async function loadOrt(): Promise<OrtModule> {
  const ort = (await import('onnxruntime-web/webgpu')) as unknown as OrtModule;
  if (isNode()) {
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = `${process.cwd()}/node_modules/onnxruntime-web/dist/`;
  } else {
    const [mjs, wasm] = await Promise.all([
      import('onnxruntime-web/ort-wasm-simd-threaded.asyncify.mjs?url'),
      import('onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url'),
    ]);
    ort.env.wasm.wasmPaths = { mjs: mjs.default, wasm: wasm.default };
  }
  return ort;
}

function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined' && typeof WorkerGlobalScope === 'undefined';
}

function isCpuAdapter(gpu: Gpu): boolean {
  return /swiftshader|llvmpipe|lavapipe/i.test(`${gpu.adapter.vendor} ${gpu.adapter.architecture} ${gpu.adapter.description}`);
}

/** ORT's WebGPU provider runs in browsers; under Node (dawn) it fails, so Node uses wasm. */
function canShareDevice(): boolean {
  return !isNode() && typeof navigator !== 'undefined' && 'gpu' in navigator;
}
