/**
 * Property-based fuzzing of parseSafetensors' refusals (fast-check): a random valid file given
 * one kind of damage is refused with an Error whose message names that damage — header length
 * past the file or past u64 range, overlapping / gapped / out-of-range data offsets, sizes that
 * overflow or disagree with the offsets, duplicate names, non-UTF-8 header bytes, trailing
 * bytes, unknown dtypes, non-object headers, bad shapes and offsets — and a stated length is
 * never trusted for an allocation.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/safetensors-refusals.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzzParams, thrown } from '../../test/fuzz.ts';
import {
  ALL_DTYPES, READABLE_DTYPES, assemble, byteSize, encodeFile, headerText, layout, nameArb, specArb, type FileSpec, type Pair,
} from '../../test/safetensors-arb.ts';
import { parseSafetensors } from './safetensors.ts';

const FIX = 're-download it, or re-export it with the safetensors library';

/** The Error parseSafetensors throws (failing the property when it throws none, or a non-Error). */
function refusal(bytes: Uint8Array, skipUnsupported = true): string {
  const err = thrown(() => parseSafetensors(bytes, { skipUnsupported }));
  if (!err) throw new Error('parseSafetensors accepted the damaged file');
  return err.message;
}

/** A copy of pair `i` of a layout with its entry's fields replaced. */
function withEntry(pairs: readonly Pair[], name: string, patch: Record<string, unknown>): Pair[] {
  return pairs.map(([k, v]) => (k === name ? [k, { ...(v as object), ...patch }] : [k, v]));
}

/** Indices of the tensors that hold bytes, in data order. */
const nonEmpty = (spec: FileSpec) => spec.order.filter((i) => spec.tensors[i].data.length > 0);

const withTwo = specArb(ALL_DTYPES, { minNonEmpty: 2 });
const withOne = specArb(ALL_DTYPES, { minNonEmpty: 1 });

describe('safetensors fuzz: the header length', () => {
  it('a length past the file or past any sane size (up to 2^64 − 1) is refused before anything is allocated from it', () => {
    const huge = fc.oneof(
      fc.bigInt({ min: 2n ** 32n, max: 2n ** 64n - 1n }),
      fc.constantFrom(2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n),
    );
    fc.assert(
      fc.property(specArb(), fc.oneof(fc.bigInt({ min: 1n, max: 100_000n }).map((d) => ({ past: d })), huge.map((abs) => ({ abs }))), (spec, len) => {
        const file = encodeFile(spec);
        const claimed = 'abs' in len ? len.abs : BigInt(file.length - 8) + len.past;
        new DataView(file.buffer).setBigUint64(0, claimed, true);
        const before = process.memoryUsage().arrayBuffers;
        const msg = refusal(file);
        // A parser that sized a buffer from the claim would show here (or die allocating).
        expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20);
        expect(msg).toContain(`safetensors header length ${claimed} `);
        expect(msg).toMatch(claimed > 100_000_000n ? /is not sane \(limit 100000000\)/ : new RegExp(`exceeds the file.*expected at least ${8n + claimed} bytes, got ${file.length}`));
      }),
      fuzzParams(),
    );
  });

  it('a file shorter than the length field', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 7 }), (bytes) => {
        expect(refusal(bytes)).toBe(`safetensors file truncated: expected at least 8 bytes (header length), got ${bytes.length}`);
      }),
      fuzzParams(),
    );
  });
});

describe('safetensors fuzz: data offsets', () => {
  it('two tensors sharing bytes: "overlap"', () => {
    fc.assert(
      fc.property(withTwo, fc.nat(), fc.nat(), fc.nat(), (spec, a, b, at) => {
        const full = nonEmpty(spec);
        const i = full[a % full.length];
        const j = full.filter((x) => x !== i)[b % (full.length - 1)];
        const { pairs, data, offsets } = layout(spec);
        const [bi, ei] = offsets[i];
        const len = spec.tensors[j].data.length;
        // Any start from bi − len + 1 to ei − 1 makes j's range meet i's.
        const begin = Math.max(0, bi - len + 1) + (at % (ei - 1 - Math.max(0, bi - len + 1) + 1));
        const moved = withEntry(pairs, spec.tensors[j].name, { data_offsets: [begin, begin + len] });
        expect(refusal(assemble(headerText(moved), data))).toMatch(/^safetensors tensors "[\s\S]*" and "[\s\S]*" overlap \(data_offsets \d+ < \d+\)$/);
      }),
      fuzzParams(),
    );
  });

  it('bytes between tensors that belong to none: "belong to no tensor"', () => {
    fc.assert(
      fc.property(withOne, fc.nat(), fc.integer({ min: 1, max: 64 }), (spec, k, gap) => {
        const full = nonEmpty(spec);
        const { pairs, data, offsets } = layout(spec);
        const at = offsets[full[k % full.length]][0];
        // Every tensor from `at` on moves `gap` bytes up; the data gets `gap` bytes there.
        const shifted = spec.tensors.reduce((ps, t, i) => (offsets[i][0] >= at ? withEntry(ps, t.name, { data_offsets: [offsets[i][0] + gap, offsets[i][1] + gap] }) : ps), pairs);
        const gapped = new Uint8Array(data.length + gap);
        gapped.set(data.subarray(0, at));
        gapped.set(data.subarray(at), at + gap);
        expect(refusal(assemble(headerText(shifted), gapped))).toMatch(new RegExp(`^safetensors tensor "[\\s\\S]*" starts at data offset \\d+ but [\\s\\S]* at \\d+: ${gap} bytes belong to no tensor`));
      }),
      fuzzParams(),
    );
  });

  it('a range past the data section (moved, or the file cut short): "truncated", with expected and actual sizes', () => {
    fc.assert(
      fc.property(withOne, fc.integer({ min: 1, max: 1000 }), fc.boolean(), (spec, d, cut) => {
        const { pairs, data, offsets } = layout(spec);
        const lastEnd = Math.max(...offsets.map((o) => o[1]));
        let file: Uint8Array;
        let end: number;
        if (cut) {
          const keep = Math.max(0, data.length - d);
          file = assemble(headerText(pairs), data.subarray(0, keep));
          end = lastEnd;
        } else {
          const last = spec.order[spec.order.length - 1];
          const moved = withEntry(pairs, spec.tensors[last].name, { data_offsets: [offsets[last][0] + d, offsets[last][1] + d] });
          file = assemble(headerText(moved), data);
          end = offsets[last][1] + d;
        }
        const headerEnd = file.length - (cut ? Math.max(0, data.length - d) : data.length);
        expect(refusal(file)).toMatch(new RegExp(`^safetensors file truncated: expected ${headerEnd + end} bytes, got ${file.length} \\(tensor "[\\s\\S]*" data_offsets end ${end} is out of bounds`));
      }),
      fuzzParams(),
    );
  });

  it('bytes after the last tensor: "bytes after the last tensor\'s data"', () => {
    fc.assert(
      fc.property(specArb(), fc.uint8Array({ minLength: 1, maxLength: 64 }), (spec, extra) => {
        const { pairs, data } = layout(spec);
        const padded = new Uint8Array(data.length + extra.length);
        padded.set(data);
        padded.set(extra, data.length);
        expect(refusal(assemble(headerText(pairs), padded))).toMatch(new RegExp(`^safetensors file has ${extra.length} bytes after the last tensor's data`));
      }),
      fuzzParams(),
    );
  });

  it('offsets that are not [begin, end] with 0 ≤ begin ≤ end safe integers: "invalid data_offsets"', () => {
    const bad = fc.oneof(
      fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 999 })).filter(([b, e]) => b > e),
      fc.tuple(fc.integer({ min: -1000, max: -1 }), fc.nat(100)),
      fc.tuple(fc.nat(100), fc.double({ min: 0.5, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x))),
      fc.tuple(fc.constant(0), fc.constantFrom(2 ** 53, 1e300)),
      fc.array(fc.nat(100), { maxLength: 4 }).filter((a) => a.length !== 2),
      fc.constantFrom(null, '0,4', { begin: 0, end: 4 }, ['0', '4'], [0, null], true, 4),
    );
    fc.assert(
      fc.property(withOne, fc.nat(), bad, (spec, k, off) => {
        const t = spec.tensors[k % spec.tensors.length];
        const { pairs, data } = layout(spec);
        expect(refusal(assemble(headerText(withEntry(pairs, t.name, { data_offsets: off })), data))).toMatch(/^safetensors tensor "[\s\S]*": invalid data_offsets .* \(want \[begin, end\], 0 ≤ begin ≤ end\)$/);
      }),
      fuzzParams(),
    );
  });
});

describe('safetensors fuzz: shapes and dtypes', () => {
  it('a shape (or dtype) whose size is not the offsets\' byte count: "hold N bytes but … needs M"', () => {
    fc.assert(
      fc.property(withOne, fc.nat(), fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 5 }), fc.constantFrom(...ALL_DTYPES), (spec, k, shape, dtype) => {
        const t = spec.tensors[k % spec.tensors.length];
        const need = byteSize(dtype, shape);
        fc.pre(need !== t.data.length);
        const { pairs, data } = layout(spec);
        expect(refusal(assemble(headerText(withEntry(pairs, t.name, { dtype, shape })), data))).toMatch(
          new RegExp(`^safetensors tensor "[\\s\\S]*": data_offsets \\[\\d+, \\d+\\] hold ${t.data.length} bytes but ${dtype} shape \\[${shape.join(', ')}\\] needs ${need}$`),
        );
      }),
      fuzzParams(),
    );
  });

  it('a shape whose byte count passes 2^53 (where floats stop counting exactly): "needs more than 2^53 bytes"', () => {
    const big = fc.integer({ min: 2 ** 18, max: Number.MAX_SAFE_INTEGER });
    fc.assert(
      fc.property(withOne, fc.nat(), fc.array(big, { minLength: 3, maxLength: 40 }), fc.constantFrom(...ALL_DTYPES), (spec, k, shape, dtype) => {
        const t = spec.tensors[k % spec.tensors.length];
        const { pairs, data } = layout(spec);
        expect(refusal(assemble(headerText(withEntry(pairs, t.name, { dtype, shape })), data))).toMatch(/^safetensors tensor "[\s\S]*": \w+ shape \[[\d, ]+\] needs more than 2\^53 bytes: corrupt shape \(re-download it/);
      }),
      fuzzParams(),
    );
  });

  it('huge dims next to a 0 dim are an empty tensor, not NaN (Infinity × 0)', () => {
    fc.assert(
      fc.property(fc.array(fc.constant(Number.MAX_SAFE_INTEGER), { minLength: 20, maxLength: 30 }), fc.nat(30), (dims, at) => {
        const shape = [...dims.slice(0, at), 0, ...dims.slice(at)];
        const file = assemble(headerText([['e', { dtype: 'F32', shape, data_offsets: [0, 0] }]]), new Uint8Array(0));
        expect(parseSafetensors(file).tensors.get('e')).toMatchObject({ byteLength: 0, shape });
        const wrong = assemble(headerText([['e', { dtype: 'F32', shape, data_offsets: [0, 4] }]]), new Uint8Array(4));
        expect(refusal(wrong)).toMatch(/hold 4 bytes but F32 shape \[.*\] needs 0$/);
      }),
      fuzzParams(),
    );
  });

  it('negative, fractional, unsafe or non-number dims, or a shape that is no array: "invalid shape"', () => {
    const badDim = fc.oneof(
      fc.integer({ min: -1000, max: -1 }),
      fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x)),
      fc.constantFrom(2 ** 53, 1e300, -1e300, '3', null, true, [2], { d: 2 }),
    );
    const badShape = fc.oneof(
      fc.tuple(fc.array(fc.nat(4), { maxLength: 3 }), badDim, fc.nat()).map(([s, d, at]) => [...s.slice(0, at % (s.length + 1)), d, ...s.slice(at % (s.length + 1))]),
      fc.constantFrom(null, 4, '2,3', { 0: 2 }, true),
    );
    fc.assert(
      fc.property(specArb(ALL_DTYPES, { minNonEmpty: 1 }), fc.nat(), badShape, (spec, k, shape) => {
        const t = spec.tensors[k % spec.tensors.length];
        const { pairs, data } = layout(spec);
        expect(refusal(assemble(headerText(withEntry(pairs, t.name, { shape })), data))).toMatch(/^safetensors tensor "[\s\S]*": invalid shape /);
      }),
      fuzzParams(),
    );
  });

  it('a dtype the format does not define (Object.prototype names included): "unsupported dtype", skipUnsupported or not', () => {
    const dtype = fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.constantFrom('constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'f32', 'F32 ', 'Q4', 'F8_E4M3FN', 'INT8'),
    ).filter((d) => !ALL_DTYPES.includes(d));
    fc.assert(
      // Readable dtypes only around it: without skipUnsupported an I64 neighbour would be refused first.
      fc.property(specArb(READABLE_DTYPES, { minNonEmpty: 1 }), fc.nat(), dtype, fc.boolean(), (spec, k, dt, skip) => {
        const t = spec.tensors[k % spec.tensors.length];
        const { pairs, data } = layout(spec);
        const msg = refusal(assemble(headerText(withEntry(pairs, t.name, { dtype: dt })), data), skip);
        expect(msg).toMatch(/^safetensors tensor "[\s\S]*" has unsupported dtype [\s\S]* \(supported: F32, F16, BF16\)$/);
        expect(msg).toContain(`tensor "${t.name}" has unsupported dtype ${dt} `);
      }),
      fuzzParams(),
    );
  });

  it('a dtype that is missing or not a string: "missing dtype" / "dtype must be a string"', () => {
    fc.assert(
      fc.property(withOne, fc.nat(), fc.constantFrom(undefined, null, 4, ['F32'], { F32: 1 }, true), (spec, k, dtype) => {
        const t = spec.tensors[k % spec.tensors.length];
        const { pairs, data } = layout(spec);
        const msg = refusal(assemble(headerText(withEntry(pairs, t.name, { dtype })), data));
        expect(msg).toMatch(dtype == null ? /^safetensors tensor "[\s\S]*": missing dtype$/ : /^safetensors tensor "[\s\S]*": dtype must be a string, got /);
      }),
      fuzzParams(),
    );
  });
});

describe('safetensors fuzz: the header JSON', () => {
  it('a tensor name written twice (JSON.parse would keep the last): "names tensor … twice"', () => {
    fc.assert(
      fc.property(withOne, fc.nat(), fc.nat(), fc.boolean(), (spec, k, at, escape) => {
        const { pairs, data } = layout(spec);
        const [name, entry] = pairs.filter(([n]) => n !== '__metadata__')[k % spec.tensors.length];
        const pos = at % (pairs.length + 1);
        const all: Pair[] = [...pairs.slice(0, pos), [name, entry], ...pairs.slice(pos)];
        // The same key spelled with a \u escape is the same key: the first one is written so.
        const first = all.findIndex(([n]) => n === name);
        const key = (n: string, i: number) =>
          escape && i === first && n.length > 0 ? `"\\u${n.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(n.slice(1)).slice(1)}` : JSON.stringify(n);
        const text = '{' + all.map(([n, v], i) => `${key(n, i)}:${JSON.stringify(v)}`).join(',') + '}';
        expect(refusal(assemble(text, data))).toBe(`safetensors header names tensor "${name}" twice: the file is corrupt or was written by a broken tool (${FIX})`);
      }),
      fuzzParams(),
    );
  });

  it('a key written twice inside an entry or in __metadata__', () => {
    fc.assert(
      fc.property(withOne, fc.nat(), fc.constantFrom('dtype', 'shape', 'data_offsets'), fc.string({ maxLength: 6 }), (spec, k, key, metaKey) => {
        const { pairs, data } = layout(spec);
        const [name, entry] = pairs.filter(([n]) => n !== '__metadata__')[k % spec.tensors.length];
        const e = entry as Record<string, unknown>;
        const dupEntry = `{"${key}":${JSON.stringify(e[key])},"dtype":${JSON.stringify(e.dtype)},"shape":${JSON.stringify(e.shape)},"data_offsets":${JSON.stringify(e.data_offsets)}}`;
        const rest = pairs.filter(([n]) => n !== name && n !== '__metadata__');
        const text = `{${JSON.stringify(name)}:${dupEntry}${rest.length ? ',' + headerText(rest).slice(1, -1) : ''}}`;
        expect(refusal(assemble(text, data))).toBe(`safetensors header entry of tensor "${name}" has the key "${key}" twice: the file is corrupt or was written by a broken tool (${FIX})`);
        const meta = `{"__metadata__":{${JSON.stringify(metaKey)}:"a",${JSON.stringify(metaKey)}:"b"},${headerText(pairs.filter(([n]) => n !== '__metadata__')).slice(1)}`;
        expect(refusal(assemble(meta, data))).toBe(`safetensors header __metadata__ has the key "${metaKey}" twice: the file is corrupt or was written by a broken tool (${FIX})`);
      }),
      fuzzParams(),
    );
  });

  it('bytes that are not UTF-8 anywhere in the header: "not valid UTF-8"', () => {
    const invalid = fc.constantFrom(
      [0xff], [0xfe], [0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xc3],
    );
    fc.assert(
      fc.property(specArb(), fc.nat(), invalid, (spec, at, seq) => {
        const { pairs, data } = layout(spec);
        const h = new TextEncoder().encode(headerText(pairs, spec.pad));
        const pos = at % (h.length + 1);
        const bad = new Uint8Array([...h.subarray(0, pos), ...seq, ...h.subarray(pos)]);
        expect(refusal(assemble(bad, data))).toBe(`safetensors header (bytes 8 to ${8 + bad.length}) is not valid UTF-8: not a safetensors file, or corrupt (${FIX})`);
      }),
      fuzzParams(),
    );
  });

  it('a header that is JSON but not an object, or not JSON at all', () => {
    const notObject = fc.jsonValue().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v));
    const notJson = fc.string({ maxLength: 20 }).filter((s) => {
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true;
      }
    });
    fc.assert(
      fc.property(fc.oneof(notObject.map((v) => ({ v })), notJson.map((s) => ({ s }))), (h) => {
        const msg = refusal(assemble('v' in h ? JSON.stringify(h.v) : h.s, new Uint8Array(0)));
        expect(msg).toMatch('v' in h ? /^safetensors header is not a JSON object$/ : /^safetensors header is not valid JSON: /);
      }),
      fuzzParams(),
    );
  });

  it('an entry, __metadata__ or a metadata value of the wrong type', () => {
    const notObject = fc.oneof(fc.jsonValue().filter((v) => typeof v !== 'object' || v === null), fc.array(fc.nat(3), { maxLength: 3 }));
    const notString = fc.jsonValue().filter((v) => typeof v !== 'string');
    fc.assert(
      fc.property(specArb(), nameArb, notObject, notString, (spec, name, v, mv) => {
        const { pairs, data } = layout(spec);
        const rest = pairs.filter(([n]) => n !== name && n !== '__metadata__');
        expect(refusal(assemble(headerText([...rest, [name, v]]), data))).toMatch(/^safetensors tensor "[\s\S]*": header entry is not an object$/);
        expect(refusal(assemble(headerText([...rest, ['__metadata__', v]]), data))).toBe('safetensors __metadata__ is not an object of strings');
        expect(refusal(assemble(headerText([...rest, ['__metadata__', { [name]: mv }]]), data))).toBe(`safetensors __metadata__ value "${name}" is not a string`);
      }),
      fuzzParams(),
    );
  });
});
