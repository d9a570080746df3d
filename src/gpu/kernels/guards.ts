/** Shape guards shared by kernel wrappers: fail loudly in TS, never read out of bounds on the GPU. */
export function assertFits(kernel: string, buffers: Record<string, GPUBuffer>, bytes: number): void {
  for (const [name, buf] of Object.entries(buffers)) {
    if (buf.size < bytes) {
      throw new RangeError(`${kernel}: buffer '${name}' holds ${buf.size} bytes but the call needs ${bytes}`);
    }
  }
}

export function assertPositiveInt(kernel: string, dims: Record<string, number>): void {
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${kernel}: ${name} must be a positive integer, got ${v}`);
  }
}
