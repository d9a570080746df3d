/**
 * safetensors: parse (with validation), read tensors as f32 / f16, and write.
 *
 * Layout (https://github.com/huggingface/safetensors):
 *
 *   [0, 8)            u64 little-endian N: length of the JSON header
 *   [8, 8+N)          JSON header: { name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str} }
 *                     (may be padded with spaces)
 *   [8+N, ...)        tensor data; data_offsets are relative to 8+N, row-major, little-endian
 */
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToF16, numel } from './weights-cpu.ts';

export type TensorDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  /** Relative to the start of the data section (dataOffset). */
  byteOffset: number;
  byteLength: number;
}

export interface ParsedSafetensors {
  tensors: Map<string, TensorInfo>;
  /** Absolute offset of the data section in the file: 8 + header length. */
  dataOffset: number;
  metadata: Record<string, string>;
  /** Tensors left out of `tensors` because of an unsupported dtype (only with skipUnsupported): name → dtype. */
  skipped: Map<string, string>;
}

export const SUPPORTED_DTYPES: readonly TensorDtype[] = ['F32', 'F16', 'BF16'];

/** Bytes per element of every dtype the format defines (to validate sizes of tensors we cannot read). */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** Same limit as the reference implementation: a larger header is a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * Parse and validate a safetensors file held in memory. Throws an Error naming the problem:
 * short file, header length beyond the file, invalid JSON, unsupported dtype (naming the
 * tensor), bad shape or offsets, size ≠ prod(shape)·dtype size, overlapping tensors, or a
 * truncated data section (expected vs actual bytes).
 *
 * With `skipUnsupported`, tensors of other valid safetensors dtypes (I64, U8, …) are checked
 * for bounds but left out of `tensors` and listed in `skipped` instead.
 */
export function parseSafetensors(bytes: Uint8Array, opts: { skipUnsupported?: boolean } = {}): ParsedSafetensors {
  if (bytes.length < 8) {
    throw new Error(`safetensors file truncated: expected at least 8 bytes (header length), got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (headerLen > MAX_HEADER_BYTES) {
    throw new Error(`safetensors header length ${headerLen} is not sane (limit ${MAX_HEADER_BYTES}): not a safetensors file or corrupt`);
  }
  if (8 + headerLen > bytes.length) {
    throw new Error(
      `safetensors header length ${headerLen} exceeds the file: file truncated or corrupt (expected at least ${8 + headerLen} bytes, got ${bytes.length})`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new Error(`safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error('safetensors header is not a JSON object');
  }

  const dataOffset = 8 + headerLen;
  const dataLen = bytes.length - dataOffset;
  const tensors = new Map<string, TensorInfo>();
  const skipped = new Map<string, string>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(entry);
      continue;
    }
    const { dtype, shape, begin, end } = parseEntry(name, entry);
    const supported = (SUPPORTED_DTYPES as readonly string[]).includes(dtype);
    if (!supported && !(opts.skipUnsupported && dtype in DTYPE_BYTES)) {
      throw new Error(`safetensors tensor "${name}" has unsupported dtype ${dtype} (supported: ${SUPPORTED_DTYPES.join(', ')})`);
    }
    const expected = numel(shape) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new Error(
        `safetensors tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape [${shape.join(', ')}] needs ${expected}`,
      );
    }
    spans.push({ name, begin, end });
    if (supported) tensors.set(name, { name, dtype: dtype as TensorDtype, shape, byteOffset: begin, byteLength: end - begin });
    else skipped.set(name, dtype);
  }

  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let last: { name: string; end: number } | null = null;
  let maxEnd = 0;
  let maxName = '';
  for (const s of spans) {
    if (last && s.begin < last.end && s.end > s.begin) {
      throw new Error(`safetensors tensors "${last.name}" and "${s.name}" overlap (data_offsets ${s.begin} < ${last.end})`);
    }
    if (s.end > s.begin) last = s;
    if (s.end > maxEnd) {
      maxEnd = s.end;
      maxName = s.name;
    }
  }
  if (maxEnd > dataLen) {
    throw new Error(
      `safetensors file truncated: expected ${dataOffset + maxEnd} bytes, got ${bytes.length} ` +
        `(tensor "${maxName}" data_offsets end ${maxEnd} is out of bounds of the ${dataLen}-byte data section)`,
    );
  }
  return { tensors, dataOffset, metadata, skipped };
}

/** Copy a tensor's values out of the file as f32 (F16 and BF16 converted exactly). */
export function tensorToF32(bytes: Uint8Array, info: TensorInfo, dataOffset: number): Float32Array {
  const raw = copyBytes(bytes, info, dataOffset);
  if (info.dtype === 'F32') return new Float32Array(raw);
  const bits = new Uint16Array(raw);
  return info.dtype === 'F16' ? f16ArrayToF32(bits) : bf16ArrayToF32(bits);
}

/** Copy a tensor's values out of the file as binary16 bits (F32 / BF16 rounded to nearest even). */
export function tensorToF16Bits(bytes: Uint8Array, info: TensorInfo, dataOffset: number): Uint16Array {
  if (info.dtype === 'F16') return new Uint16Array(copyBytes(bytes, info, dataOffset));
  return f32ArrayToF16(tensorToF32(bytes, info, dataOffset));
}

export interface TensorToWrite {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  /** Raw little-endian bytes: prod(shape) × dtype size. */
  data: Uint8Array;
}

/**
 * Serialize tensors to a safetensors file. Deterministic: tensors are laid out in name order,
 * the header is compact JSON padded with spaces to a multiple of 8 bytes.
 */
export function serializeSafetensors(list: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const sorted = [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of sorted) {
    const size = numel(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.length !== size) throw new Error(`serializeSafetensors: "${t.name}" has ${t.data.length} bytes, shape needs ${size}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((new TextEncoder().encode(json).length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setUint32(0, headerBytes.length, true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const t of sorted) {
    out.set(t.data, pos);
    pos += t.data.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function parseEntry(name: string, entry: unknown): { dtype: string; shape: number[]; begin: number; end: number } {
  if (typeof entry !== 'object' || entry === null) throw new Error(`safetensors tensor "${name}": header entry is not an object`);
  const e = entry as Record<string, unknown>;
  if (typeof e.dtype !== 'string') throw new Error(`safetensors tensor "${name}": missing dtype`);
  if (!(e.dtype in DTYPE_BYTES)) {
    throw new Error(`safetensors tensor "${name}" has unsupported dtype ${e.dtype} (supported: ${SUPPORTED_DTYPES.join(', ')})`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`safetensors tensor "${name}": invalid shape ${JSON.stringify(shape)}`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
    throw new Error(`safetensors tensor "${name}": invalid data_offsets ${JSON.stringify(off)} (want [begin, end], 0 ≤ begin ≤ end)`);
  }
  return { dtype: e.dtype, shape: shape as number[], begin: off[0] as number, end: off[1] as number };
}

function parseMetadata(entry: unknown): Record<string, string> {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new Error('safetensors __metadata__ is not an object of strings');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') throw new Error(`safetensors __metadata__ value "${k}" is not a string`);
    out[k] = v;
  }
  return out;
}

/** A fresh, aligned ArrayBuffer holding the tensor's bytes. */
function copyBytes(bytes: Uint8Array, info: TensorInfo, dataOffset: number): ArrayBuffer {
  const start = dataOffset + info.byteOffset;
  if (start + info.byteLength > bytes.length) {
    throw new Error(`safetensors tensor "${info.name}" is out of bounds of the file (needs ${start + info.byteLength} bytes, got ${bytes.length})`);
  }
  const buf = new ArrayBuffer(info.byteLength);
  new Uint8Array(buf).set(bytes.subarray(start, start + info.byteLength));
  return buf;
}
