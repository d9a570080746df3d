/**
 * Packs a kernel's uniform struct. WGSL structs of u32/i32/f32 scalars are
 * laid out 4 bytes apart in declaration order, so kernels declare scalars
 * only and wrappers push them in the same order.
 */
export class Uniforms {
  private words: number[] = [];
  private kinds: ('u' | 'i' | 'f')[] = [];

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform u32 out of range: ${v}`);
    return this.push(v, 'u');
  }

  i32(v: number): this {
    return this.push(v, 'i');
  }

  f32(v: number): this {
    return this.push(v, 'f');
  }

  /** Bytes, padded to 16 (the uniform binding granularity). */
  bytes(): ArrayBuffer {
    const n = Math.max(4, Math.ceil(this.words.length / 4) * 4);
    const buf = new ArrayBuffer(n * 4);
    const u = new Uint32Array(buf);
    const i = new Int32Array(buf);
    const f = new Float32Array(buf);
    this.words.forEach((v, k) => {
      if (this.kinds[k] === 'u') u[k] = v;
      else if (this.kinds[k] === 'i') i[k] = v;
      else f[k] = v;
    });
    return buf;
  }

  private push(v: number, kind: 'u' | 'i' | 'f'): this {
    this.words.push(v);
    this.kinds.push(kind);
    return this;
  }
}
