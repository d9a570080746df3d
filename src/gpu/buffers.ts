import type { Gpu } from './context.ts';

/** Buffer helpers: tracked storage buffers, uploads and readbacks. */

/** GPUBufferUsage is a global only once WebGPU is present, so read it lazily. */
export function storageUsage(): GPUBufferUsageFlags {
  return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
}

export function storageBuffer(gpu: Gpu, label: string, size: number): GPUBuffer {
  return gpu.createBuffer(label, size, storageUsage());
}

export function uploadBuffer(gpu: Gpu, label: string, data: ArrayBufferView): GPUBuffer {
  const buffer = storageBuffer(gpu, label, data.byteLength);
  writeBuffer(gpu, buffer, data);
  return buffer;
}

/** writeBuffer needs a multiple of 4 bytes; pad odd-sized views. */
export function writeBuffer(gpu: Gpu, buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4 !== 0) {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    bytes = padded;
  }
  gpu.device.queue.writeBuffer(buffer, offset, bytes);
}

export async function readBuffer(gpu: Gpu, buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<ArrayBuffer> {
  const staging = gpu.device.createBuffer({
    label: 'readback',
    size: Math.ceil(size / 4) * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = gpu.device.createCommandEncoder({ label: 'readback' });
  enc.copyBufferToBuffer(buffer, offset, staging, 0, staging.size);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, size);
  staging.unmap();
  staging.destroy();
  return out;
}

export async function readF32(gpu: Gpu, buffer: GPUBuffer, offset = 0, count?: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(gpu, buffer, offset, count === undefined ? undefined : count * 4));
}

export async function readU32(gpu: Gpu, buffer: GPUBuffer, offset = 0, count?: number): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(gpu, buffer, offset, count === undefined ? undefined : count * 4));
}
