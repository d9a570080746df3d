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

/**
 * Bytes per element of every dtype the format defines (to validate sizes of tensors we cannot read).
 * A Map, not an object literal: a header's dtype "constructor" or "toString" must not find
 * Object.prototype's members.
 */
const DTYPE_BYTES = new Map<string, number>(Object.entries({
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
}));

/** What to do about a damaged file, for the errors that say it is one. */
const FIX = 're-download it, or re-export it with the safetensors library';

/** Same limit as the reference implementation: a larger header is a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * Parse and validate a safetensors file held in memory. Throws an Error naming the problem:
 * short file, header length beyond the file, a header that is not UTF-8 JSON or names a key
 * twice, unsupported dtype (naming the tensor), bad shape or offsets, size ≠ prod(shape)·dtype
 * size, overlapping tensors, bytes between tensors or after the last one, or a truncated data
 * section (expected vs actual bytes). Nothing is allocated from a length the file states
 * before that length is checked against the file's actual size.
 *
 * With `skipUnsupported`, tensors of other valid safetensors dtypes (I64, U8, …) are checked
 * for bounds but left out of `tensors` and listed in `skipped` instead.
 */
export function parseSafetensors(bytes: Uint8Array, opts: { skipUnsupported?: boolean } = {}): ParsedSafetensors {
  if (bytes.length < 8) {
    throw new Error(`safetensors file truncated: expected at least 8 bytes (header length), got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`safetensors header length ${headerLen64} is not sane (limit ${MAX_HEADER_BYTES}): not a safetensors file or corrupt`);
  }
  const headerLen = Number(headerLen64);
  if (8 + headerLen > bytes.length) {
    throw new Error(
      `safetensors header length ${headerLen} exceeds the file: file truncated or corrupt (expected at least ${8 + headerLen} bytes, got ${bytes.length})`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw new Error(`safetensors header (bytes 8 to ${8 + headerLen}) is not valid UTF-8: not a safetensors file, or corrupt (${FIX})`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new Error(`safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error('safetensors header is not a JSON object');
  }
  // JSON.parse keeps the last of two equal keys: a second "w" would silently replace the first.
  const dup = duplicateKey(text);
  if (dup) {
    const what =
      dup.in === null ? `names ${dup.key === '__metadata__' ? '__metadata__' : `tensor "${dup.key}"`} twice`
      : dup.in === '__metadata__' ? `__metadata__ has the key "${dup.key}" twice`
      : `entry of tensor "${dup.in}" has the key "${dup.key}" twice`;
    throw new Error(`safetensors header ${what}: the file is corrupt or was written by a broken tool (${FIX})`);
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
    if (!supported && !opts.skipUnsupported) {
      throw new Error(`safetensors tensor "${name}" has unsupported dtype ${dtype} (supported: ${SUPPORTED_DTYPES.join(', ')})`);
    }
    const count = elementCount(shape);
    const expected = count === null ? null : count * DTYPE_BYTES.get(dtype)!;
    if (expected === null || !Number.isSafeInteger(expected)) {
      throw new Error(`safetensors tensor "${name}": ${dtype} shape [${shape.join(', ')}] needs more than 2^53 bytes: corrupt shape (${FIX})`);
    }
    if (end - begin !== expected) {
      throw new Error(
        `safetensors tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape [${shape.join(', ')}] needs ${expected}`,
      );
    }
    spans.push({ name, begin, end });
    if (supported) tensors.set(name, { name, dtype: dtype as TensorDtype, shape, byteOffset: begin, byteLength: end - begin });
    else skipped.set(name, dtype);
  }
  checkSpans(spans, dataOffset, dataLen, bytes.length);
  return { tensors, dataOffset, metadata, skipped };
}

/**
 * The tensors' byte ranges must tile the data section exactly, as the reference implementation
 * requires: no overlap (two tensors sharing bytes), no range past the file, no bytes between
 * tensors or after the last. Empty tensors hold no bytes and may sit at any offset in the section.
 */
function checkSpans(spans: { name: string; begin: number; end: number }[], dataOffset: number, dataLen: number, fileLen: number): void {
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
      `safetensors file truncated: expected ${dataOffset + maxEnd} bytes, got ${fileLen} ` +
        `(tensor "${maxName}" data_offsets end ${maxEnd} is out of bounds of the ${dataLen}-byte data section)`,
    );
  }
  let cursor = 0;
  let prev: string | null = null;
  for (const s of spans) {
    if (s.end === s.begin) continue;
    if (s.begin > cursor) {
      throw new Error(
        `safetensors tensor "${s.name}" starts at data offset ${s.begin} but ${prev !== null ? `tensor "${prev}" ends` : 'the data section starts'} at ${cursor}: ` +
          `${s.begin - cursor} bytes belong to no tensor: corrupt data_offsets (${FIX})`,
      );
    }
    cursor = s.end;
    prev = s.name;
  }
  if (cursor !== dataLen) {
    throw new Error(
      `safetensors file has ${dataLen - cursor} bytes after the last tensor's data (expected ${dataOffset + cursor} bytes, got ${fileLen}): ` +
        `the file is corrupt or was not written as safetensors (${FIX})`,
    );
  }
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
  const entries: [string, unknown][] = [['__metadata__', metadata]];
  let offset = 0;
  for (const t of sorted) {
    const size = numel(t.shape) * DTYPE_BYTES.get(t.dtype)!;
    if (t.data.length !== size) throw new Error(`serializeSafetensors: "${t.name}" has ${t.data.length} bytes, shape needs ${size}`);
    entries.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] }]);
    offset += size;
  }
  // fromEntries defines own properties: `header[name] = …` would set the prototype for a tensor named "__proto__".
  let json = JSON.stringify(Object.fromEntries(entries));
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
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new Error(`safetensors tensor "${name}": header entry is not an object`);
  const e = entry as Record<string, unknown>;
  if (e.dtype == null) throw new Error(`safetensors tensor "${name}": missing dtype`);
  if (typeof e.dtype !== 'string') throw new Error(`safetensors tensor "${name}": dtype must be a string, got ${JSON.stringify(e.dtype)}`);
  if (!DTYPE_BYTES.has(e.dtype)) {
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
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') throw new Error(`safetensors __metadata__ value "${k}" is not a string`);
  }
  // fromEntries defines own properties: a key "__proto__" stays a key instead of being dropped.
  return Object.fromEntries(Object.entries(entry)) as Record<string, string>;
}

/** prod(shape), or null when it passes 2^53 (an empty dimension anywhere makes it 0, whatever the others). */
function elementCount(shape: readonly number[]): number | null {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return null;
  }
  return n;
}

/**
 * The first key that an object of the (valid) JSON text names twice, and the top-level key
 * whose value holds that object (null for the top level itself). A scan of the text, since
 * JSON.parse drops the earlier duplicate without a word.
 */
function duplicateKey(text: string): { key: string; in: string | null } | null {
  // One frame per open object or array: its keys so far (null for an array), the key it sits under.
  const stack: { keys: Set<string> | null; under: string | null }[] = [];
  let expectKey = false;
  let lastKey: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      for (; text.charCodeAt(j) !== 0x22; j++) {
        if (text.charCodeAt(j) === 0x5c) {
          escaped = true;
          j++;
        }
      }
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) return { key, in: stack.length === 1 ? null : stack[1].under };
        top.keys.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      stack.push({ keys: c === 0x7b ? new Set() : null, under: lastKey });
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = !!stack[stack.length - 1]?.keys;
    }
  }
  return null;
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
