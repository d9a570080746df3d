import { Gpu } from './context.ts';

/**
 * Acquires a GPUDevice in a page, a Worker or Node. In Node, pass the `GPU`
 * object from the `webgpu` package (see `node-gpu.ts`); in a browser it
 * defaults to `navigator.gpu`.
 *
 * We ask for the adapter's own limits: a device otherwise gets the defaults
 * (128 MiB storage bindings), too small for a KV pool or a large weight.
 */
export interface AcquireOptions {
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Request timestamp queries when the adapter has them (default true). */
  timestamps?: boolean;
}

export async function acquireGpu(options: AcquireOptions = {}): Promise<Gpu> {
  const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new Error(
      'WebGPU is not available here: use a browser with WebGPU (Chrome/Edge 113+, or Chromium with --enable-unsafe-webgpu) or, in Node, the `webgpu` package',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error('No WebGPU adapter was found: the browser may have WebGPU disabled or no usable GPU driver');

  const wanted: GPUFeatureName[] = ['subgroups', 'shader-f16'];
  if (options.timestamps !== false) wanted.push('timestamp-query');
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') console.error(`WebGPU device lost: ${info.message}`);
  });
  const info = adapter.info;
  return new Gpu(
    device,
    { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', description: info?.description ?? '', device: info?.device ?? '' },
    () => acquireGpu(options),
  );
}
