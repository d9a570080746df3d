/**
 * Property-based fuzzing of parseSafetensors (fast-check): random valid files round-trip
 * exactly, and random mutations of them either parse to tensors that satisfy every invariant
 * or are refused with a plain Error — never a TypeError / RangeError, never a hang.
 * The targeted refusals (one kind of damage each) are in safetensors-refusals.fuzz.node.test.ts.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/safetensors.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzzParams, thrown } from '../../test/fuzz.ts';
import {
  ALL_DTYPES, DTYPE_SIZE, READABLE_DTYPES, assemble, encodeFile, headerText, layout, numel, sameBytes, specArb, unaligned,
  type FileSpec,
} from '../../test/safetensors-arb.ts';
import { parseSafetensors, serializeSafetensors, tensorToF16Bits, tensorToF32, type ParsedSafetensors, type TensorDtype } from './safetensors.ts';
import { bf16ArrayToF32 } from './weights-cpu.ts';

const sortedEntries = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** A fresh aligned copy, so a Uint16Array / Float32Array can view it. */
const aligned = (b: Uint8Array) => b.slice().buffer;

function checkRoundTrip(spec: FileSpec, file: Uint8Array, parsed: ParsedSafetensors): void {
  expect(parsed.tensors.size + parsed.skipped.size).toBe(spec.tensors.length);
  for (const t of spec.tensors) {
    if (!READABLE_DTYPES.includes(t.dtype)) {
      expect(parsed.skipped.get(t.name)).toBe(t.dtype);
      continue;
    }
    const info = parsed.tensors.get(t.name)!;
    expect(info).toBeDefined();
    expect([info.dtype, info.shape]).toEqual([t.dtype, t.shape]);
    const start = parsed.dataOffset + info.byteOffset;
    expect(sameBytes(file.subarray(start, start + info.byteLength), t.data)).toBe(true);
    // The readers hand back the same values (F32 and F16 bit for bit, NaN payloads included).
    if (t.dtype === 'F32') expect(sameBytes(new Uint8Array(tensorToF32(file, info, parsed.dataOffset).buffer), t.data)).toBe(true);
    if (t.dtype === 'F16') expect(sameBytes(new Uint8Array(tensorToF16Bits(file, info, parsed.dataOffset).buffer), t.data)).toBe(true);
    if (t.dtype === 'BF16') {
      const want = bf16ArrayToF32(new Uint16Array(aligned(t.data)));
      expect(sameBytes(new Uint8Array(tensorToF32(file, info, parsed.dataOffset).buffer), new Uint8Array(want.buffer))).toBe(true);
    }
  }
  expect(sortedEntries(parsed.metadata)).toEqual(sortedEntries(spec.metadata ?? {}));
}

/**
 * What any successful parse must satisfy, whatever bytes it was given: the data section starts
 * after the stated header, each tensor's range lies inside it and holds exactly prod(shape) ×
 * dtype size bytes, ranges do not overlap (and tile the section when no tensor was skipped),
 * and reading each tensor works.
 */
function checkInvariants(bytes: Uint8Array, p: ParsedSafetensors): void {
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  expect(p.dataOffset).toBe(8 + headerLen);
  const dataLen = bytes.length - p.dataOffset;
  expect(dataLen).toBeGreaterThanOrEqual(0);
  const ranges: [number, number][] = [];
  for (const [name, info] of p.tensors) {
    expect(info.name).toBe(name);
    expect(READABLE_DTYPES).toContain(info.dtype);
    expect(info.shape.every((d) => Number.isSafeInteger(d) && d >= 0)).toBe(true);
    expect(Number.isSafeInteger(info.byteOffset) && info.byteOffset >= 0).toBe(true);
    expect(info.byteOffset + info.byteLength).toBeLessThanOrEqual(dataLen);
    expect(info.byteLength).toBe(numel(info.shape) * DTYPE_SIZE[info.dtype]);
    if (info.byteLength > 0) ranges.push([info.byteOffset, info.byteOffset + info.byteLength]);
    expect(tensorToF32(bytes, info, p.dataOffset).length).toBe(numel(info.shape));
    expect(tensorToF16Bits(bytes, info, p.dataOffset).length).toBe(numel(info.shape));
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBeGreaterThanOrEqual(ranges[i - 1][1]);
  if (p.skipped.size === 0) expect(ranges.reduce((n, [b, e]) => n + e - b, 0)).toBe(dataLen);
  for (const v of Object.values(p.metadata)) expect(typeof v).toBe('string');
}

/** Parse, then either the invariants hold or a plain Error said "safetensors …". */
function parsesOrRefuses(bytes: Uint8Array, skipUnsupported: boolean): void {
  let parsed: ParsedSafetensors | undefined;
  const err = thrown(() => (parsed = parseSafetensors(bytes, { skipUnsupported })));
  if (err) expect(err.message).toMatch(/^safetensors /);
  else checkInvariants(bytes, parsed!);
}

describe('safetensors fuzz: valid files round-trip', () => {
  it('random files (every dtype, scalars, empty dims, any names, optional __metadata__, any data order) parse to their exact tensors', () => {
    fc.assert(
      fc.property(specArb(ALL_DTYPES), fc.integer({ min: 0, max: 7 }), (spec, shift) => {
        const file = unaligned(encodeFile(spec), shift);
        const parsed = parseSafetensors(file, { skipUnsupported: true });
        expect(parsed.dataOffset).toBe(8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true)));
        checkRoundTrip(spec, file, parsed);
        checkInvariants(file, parsed);
        const unreadable = spec.tensors.find((t) => !READABLE_DTYPES.includes(t.dtype));
        if (unreadable) expect(() => parseSafetensors(file)).toThrow(/has unsupported dtype/);
        else expect(parseSafetensors(file).tensors.size).toBe(spec.tensors.length);
      }),
      fuzzParams(),
    );
  });

  it("serializeSafetensors' files parse back to the tensors and metadata it was given", () => {
    fc.assert(
      fc.property(specArb(READABLE_DTYPES), (spec) => {
        const metadata = spec.metadata ?? {};
        const file = serializeSafetensors(spec.tensors.map((t) => ({ ...t, dtype: t.dtype as TensorDtype })), metadata);
        const parsed = parseSafetensors(file);
        expect(parsed.dataOffset % 8).toBe(0);
        checkRoundTrip({ ...spec, metadata }, file, parsed);
      }),
      fuzzParams(),
    );
  });
});

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 0x20, 0x22, 0x2c, 0x30, 0x31, 0x39, 0x5b, 0x5d, 0x7b, 0x7d, 0x80, 0xff) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
);

/**
 * Apply a mutation; `at` is taken modulo `span` (the region to aim at: the whole file, or the
 * length field and header, where most of the parser's decisions are made).
 */
function mutate(bytes: Uint8Array, m: Mutation, span: number): Uint8Array {
  const at = bytes.length ? m.at % Math.max(1, Math.min(span, bytes.length)) : 0;
  const out = bytes.slice();
  switch (m.kind) {
    case 'flip':
      if (out.length) out[at] ^= 1 << m.bit;
      return out;
    case 'set':
      if (out.length) out[at] = m.value;
      return out;
    case 'truncate':
      return out.subarray(0, at);
    case 'insert': {
      const r = new Uint8Array(out.length + m.bytes.length);
      r.set(out.subarray(0, at));
      r.set(m.bytes, at);
      r.set(out.subarray(at), at + m.bytes.length);
      return r;
    }
    case 'delete': {
      const end = Math.min(out.length, at + m.count);
      const r = new Uint8Array(out.length - (end - at));
      r.set(out.subarray(0, at));
      r.set(out.subarray(end), at);
      return r;
    }
  }
}

/** JSON-meaningful edits of the header text, after which the header length is written right. */
type TextEdit = { at: number; del: number; ins: string };
const textEditArb: fc.Arbitrary<TextEdit> = fc.record({
  at: fc.nat(),
  del: fc.integer({ min: 0, max: 3 }),
  ins: fc.oneof(
    fc.constantFrom('0', '1', '7', '9', '-1', '1.5', '1e3', '99999999999999999999', '"', ',', ':', '[', ']', '{', '}', 'null', '"F16"', '"I64"', '""', '\\u0000'),
    fc.string({ maxLength: 3 }),
  ),
});

describe('safetensors fuzz: mutated files parse to valid tensors or are refused with an Error', () => {
  it('random byte flips, sets, truncations, insertions and deletions anywhere in the file', () => {
    fc.assert(
      fc.property(specArb(ALL_DTYPES), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (spec, muts, skip) => {
        let bytes = encodeFile(spec);
        for (const m of muts) bytes = mutate(bytes, m, bytes.length);
        parsesOrRefuses(bytes, skip);
      }),
      fuzzParams(),
    );
  });

  it('the same mutations aimed at the length field and the header', () => {
    fc.assert(
      fc.property(specArb(ALL_DTYPES), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.boolean(), (spec, muts, skip) => {
        let bytes = encodeFile(spec);
        const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
        for (const m of muts) bytes = mutate(bytes, m, headerEnd);
        parsesOrRefuses(bytes, skip);
      }),
      fuzzParams(),
    );
  });

  it('edits of the header JSON (digits, quotes, brackets) with a consistent header length', () => {
    fc.assert(
      fc.property(specArb(ALL_DTYPES), fc.array(textEditArb, { minLength: 1, maxLength: 3 }), fc.boolean(), (spec, edits, skip) => {
        const { pairs, data } = layout(spec);
        let text = headerText(pairs, spec.pad);
        for (const e of edits) {
          const at = e.at % (text.length + 1);
          text = text.slice(0, at) + e.ins + text.slice(at + e.del);
        }
        parsesOrRefuses(assemble(text, data), skip);
      }),
      fuzzParams(),
    );
  });
});
