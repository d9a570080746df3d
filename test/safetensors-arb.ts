/**
 * A safetensors encoder written apart from src/model/safetensors.ts (so the parser is checked
 * against an independent reading of the format, not against its own writer), and fast-check
 * arbitraries of valid files for the fuzz tests to round-trip and then break.
 *
 * The header is written as text, pair by pair, so a test can put in what JSON.stringify of an
 * object never produces: a key twice, a given key order, an escaped key.
 */
import fc from 'fast-check';

/** Bytes per element of every dtype the format defines. */
export const DTYPE_SIZE: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};
export const ALL_DTYPES = Object.keys(DTYPE_SIZE);
export const READABLE_DTYPES = ['F32', 'F16', 'BF16'];

export interface Tensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export interface FileSpec {
  tensors: Tensor[];
  /** The order of the tensors' bytes in the data section (indices into tensors). */
  order: number[];
  metadata: Record<string, string> | null;
  metadataFirst: boolean;
  /** Spaces after the JSON (writers pad the header to a multiple of 8). */
  pad: number;
}

/** One header pair as written: the key and the value (any JSON, so tests can write wrong ones). */
export type Pair = [key: string, value: unknown];

export interface Layout {
  pairs: Pair[];
  data: Uint8Array;
  /** Per tensor (same index as spec.tensors): its data_offsets. */
  offsets: [number, number][];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function byteSize(dtype: string, shape: readonly number[]): number {
  return numel(shape) * DTYPE_SIZE[dtype];
}

/** The header pairs and data section of a spec: tensors' bytes back to back in spec.order. */
export function layout(spec: FileSpec): Layout {
  const offsets: [number, number][] = spec.tensors.map(() => [0, 0]);
  let cursor = 0;
  for (const i of spec.order) {
    offsets[i] = [cursor, cursor + spec.tensors[i].data.length];
    cursor += spec.tensors[i].data.length;
  }
  const data = new Uint8Array(cursor);
  for (const i of spec.order) data.set(spec.tensors[i].data, offsets[i][0]);
  const pairs: Pair[] = spec.tensors.map((t, i) => [t.name, { dtype: t.dtype, shape: t.shape, data_offsets: offsets[i] }]);
  if (spec.metadata) {
    const meta: Pair = ['__metadata__', spec.metadata];
    if (spec.metadataFirst) pairs.unshift(meta);
    else pairs.push(meta);
  }
  return { pairs, data, offsets };
}

/** `{"k":v,...}` followed by `pad` spaces; keys go out in the given order, duplicates included. */
export function headerText(pairs: readonly Pair[], pad = 0): string {
  return '{' + pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',') + '}' + ' '.repeat(pad);
}

/** u64 header length (the real one unless `claimed`), header bytes, data. */
export function assemble(header: string | Uint8Array, data: Uint8Array, claimed?: bigint): Uint8Array {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, claimed ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

export function encodeFile(spec: FileSpec): Uint8Array {
  const { pairs, data } = layout(spec);
  return assemble(headerText(pairs, spec.pad), data);
}

/** `bytes` at `shift` bytes into a larger buffer: the parser must not assume an aligned view. */
export function unaligned(bytes: Uint8Array, shift: number): Uint8Array {
  const host = new Uint8Array(bytes.length + shift + 3);
  host.set(bytes, shift);
  return host.subarray(shift, shift + bytes.length);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

/** Any Unicode name (not the metadata key): HF names are ASCII, but nothing in the format says so. */
export const nameArb = fc.string({ unit: 'binary', maxLength: 12 }).filter((s) => s !== '__metadata__');

/** Up to 4 dims of 0..6: scalars ([]), empty tensors (a 0 dim) and small ones. */
export const shapeArb = fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 4 });

export function tensorArb(dtypes: readonly string[], shape = shapeArb): fc.Arbitrary<Tensor> {
  return fc
    .record({ name: nameArb, dtype: fc.constantFrom(...dtypes), shape })
    .chain((t) => {
      const n = byteSize(t.dtype, t.shape);
      return fc.uint8Array({ minLength: n, maxLength: n }).map((data) => ({ ...t, data }));
    });
}

/** Metadata keys include Object.prototype's names: a parser that assigns out[k] = v drops "__proto__". */
const metadataArb = fc.option(
  fc.dictionary(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'toString')), fc.string({ unit: 'binary', maxLength: 16 }), { maxKeys: 4 }),
  { nil: null },
);

/**
 * Valid files of tensors of `dtypes`; `minNonEmpty` of them hold at least one byte (the
 * refusal tests need tensors whose offsets can be moved).
 */
export function specArb(dtypes: readonly string[] = ALL_DTYPES, opts: { minNonEmpty?: number; maxTensors?: number } = {}): fc.Arbitrary<FileSpec> {
  const minNonEmpty = opts.minNonEmpty ?? 0;
  const nonEmpty = tensorArb(dtypes, fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 3 }));
  return fc
    .tuple(
      fc.array(nonEmpty, { minLength: minNonEmpty, maxLength: minNonEmpty }),
      fc.array(tensorArb(dtypes), { maxLength: opts.maxTensors ?? 6 }),
    )
    .map(([a, b]) => dedupe([...a, ...b]))
    .filter((ts) => ts.filter((t) => t.data.length > 0).length >= minNonEmpty)
    .chain((tensors) =>
      fc.record({
        tensors: fc.constant(tensors),
        order: fc.shuffledSubarray(tensors.map((_, i) => i), { minLength: tensors.length, maxLength: tensors.length }),
        metadata: metadataArb,
        metadataFirst: fc.boolean(),
        pad: fc.integer({ min: 0, max: 9 }),
      }),
    );
}

/** First tensor of each name wins (names are keys of the header). */
function dedupe(ts: Tensor[]): Tensor[] {
  const seen = new Set<string>();
  return ts.filter((t) => !seen.has(t.name) && (seen.add(t.name), true));
}
