/**
 * Compute pipelines, compiled once per (shader, override constants) and
 * reused. Kernels pass their WGSL source and the `override` values they need;
 * the cache key is the shader name plus the sorted constants.
 */
export type Constants = Record<string, number>;

export class PipelineCache {
  private cache = new Map<string, GPUComputePipeline>();
  private modules = new Map<string, GPUShaderModule>();

  constructor(private readonly device: GPUDevice) {}

  get(name: string, source: string, constants: Constants = {}, entryPoint = 'main'): GPUComputePipeline {
    const key = `${name}#${entryPoint}|${Object.keys(constants)
      .sort()
      .map((k) => `${k}=${constants[k]}`)
      .join(',')}`;
    let pipeline = this.cache.get(key);
    if (!pipeline) {
      pipeline = this.device.createComputePipeline({
        label: key,
        layout: 'auto',
        compute: { module: this.module(name, source), entryPoint, constants },
      });
      this.cache.set(key, pipeline);
    }
    return pipeline;
  }

  get size(): number {
    return this.cache.size;
  }

  private module(name: string, source: string): GPUShaderModule {
    let m = this.modules.get(name);
    if (!m) {
      m = this.device.createShaderModule({ label: name, code: source });
      this.modules.set(name, m);
    }
    return m;
  }
}
