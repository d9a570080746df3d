/**
 * A small GGUF (v3) writer: what llama.cpp — and so wllama — loads. Layout:
 * magic "GGUF", version, tensor count (u64), metadata count (u64); the
 * metadata key/values; one info per tensor (name, dims innermost first,
 * ggml type, offset into the data section); padding to the alignment; the
 * tensors' bytes, each starting on an aligned offset.
 */

export const GGUF_ALIGNMENT = 32;

/** ggml tensor types this writer stores. */
export const GGML_TYPE = { F32: 0, F16: 1 } as const;

/** GGUF metadata value types (gguf.h). */
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

export type GgufValue =
  | { u32: number }
  | { i32: number }
  | { f32: number }
  | { bool: boolean }
  | { string: string }
  | { strings: string[] }
  | { f32s: ArrayLike<number> }
  | { i32s: ArrayLike<number> };

export interface GgufTensor {
  name: string;
  /** Row-major shape, outermost first (as safetensors and numpy write it); stored reversed, as ggml's ne. */
  shape: number[];
  type: (typeof GGML_TYPE)[keyof typeof GGML_TYPE];
  data: Uint8Array;
}

/** The file as a list of byte chunks (weights are not copied into one buffer). */
export function writeGguf(metadata: Record<string, GgufValue>, tensors: GgufTensor[]): Uint8Array[] {
  const head = new ByteSink();
  head.bytes(new TextEncoder().encode('GGUF'));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    head.string(key);
    writeValue(head, value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    checkTensor(t);
    offsets.push(offset);
    head.string(t.name);
    head.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    offset = align(offset + t.data.length);
  }
  head.bytes(new Uint8Array(align(head.length) - head.length));
  const chunks = [head.finish()];
  tensors.forEach((t, i) => {
    chunks.push(t.data);
    const end = offsets[i] + t.data.length;
    const next = i + 1 < tensors.length ? offsets[i + 1] : end;
    if (next > end) chunks.push(new Uint8Array(next - end));
  });
  return chunks;
}

function checkTensor(t: GgufTensor): void {
  const elements = t.shape.reduce((a, b) => a * b, 1);
  const bytes = elements * (t.type === GGML_TYPE.F32 ? 4 : 2);
  if (bytes !== t.data.length) throw new Error(`GGUF tensor ${t.name}: shape [${t.shape}] needs ${bytes} bytes, got ${t.data.length}`);
}

function writeValue(s: ByteSink, v: GgufValue): void {
  if ('u32' in v) (s.u32(T.u32), s.u32(v.u32));
  else if ('i32' in v) (s.u32(T.i32), s.i32(v.i32));
  else if ('f32' in v) (s.u32(T.f32), s.f32(v.f32));
  else if ('bool' in v) (s.u32(T.bool), s.bytes(Uint8Array.of(v.bool ? 1 : 0)));
  else if ('string' in v) (s.u32(T.string), s.string(v.string));
  else if ('strings' in v) {
    s.u32(T.array), s.u32(T.string), s.u64(v.strings.length);
    for (const x of v.strings) s.string(x);
  } else if ('f32s' in v) {
    s.u32(T.array), s.u32(T.f32), s.u64(v.f32s.length);
    for (let i = 0; i < v.f32s.length; i++) s.f32(v.f32s[i]);
  } else {
    s.u32(T.array), s.u32(T.i32), s.u64(v.i32s.length);
    for (let i = 0; i < v.i32s.length; i++) s.i32(v.i32s[i]);
  }
}

function align(n: number): number {
  return Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
}

/** A growable little-endian byte buffer. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // room() first: it may replace buf and view
  u32(x: number): void { const at = this.room(4); this.view.setUint32(at, x, true); }
  i32(x: number): void { const at = this.room(4); this.view.setInt32(at, x, true); }
  f32(x: number): void { const at = this.room(4); this.view.setFloat32(at, x, true); }
  u64(x: number): void { const at = this.room(8); this.view.setBigUint64(at, BigInt(x), true); }
  bytes(b: Uint8Array): void { const at = this.room(b.length); this.buf.set(b, at); }
  string(x: string): void {
    const b = new TextEncoder().encode(x);
    this.u64(b.length);
    this.bytes(b);
  }
  finish(): Uint8Array { return this.buf.slice(0, this.length); }
}
