import { describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors, tensorToF16Bits, tensorToF32, type TensorToWrite } from './safetensors.ts';
import { bf16ArrayToF32, f16BitsToF32, f32ArrayToBf16, f32ArrayToF16, f32ToF16Bits, roundF16 } from './weights-cpu.ts';

const enc = new TextEncoder();

/** A file with an arbitrary header object and `dataBytes` bytes of data. */
function rawFile(header: unknown, dataBytes: number): Uint8Array {
  const json = enc.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  return out;
}

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

describe('f16 / bf16 conversions', () => {
  it('converts hand-checked values', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds to +Inf
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie → even (zero)
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(f16BitsToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(roundF16(0.1)).toBe(0.0999755859375);
  });

  it('round-trips every finite f16 bit pattern', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const back = f32ToF16Bits(f16BitsToF32(h));
      if (back !== h && !(h === 0x8000 && back === 0x8000)) throw new Error(`f16 ${h.toString(16)} → ${back.toString(16)}`);
    }
  });

  it('bf16 rounds to nearest even and converts back exactly', () => {
    const x = new Float32Array([1, -3.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.1415927]);
    expect(Array.from(f32ArrayToBf16(x))).toEqual([0x3f80, 0xc060, 0x3f80, 0x3f82, 0x4049]);
    expect(Array.from(bf16ArrayToF32(new Uint16Array([0x3f80, 0xc060, 0x4049])))).toEqual([1, -3.5, 3.140625]);
  });
});

describe('safetensors', () => {
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new Float32Array([0.5, -0.25, 1e-3]);
  const tensors: TensorToWrite[] = [
    { name: 'w.f32', dtype: 'F32', shape: [2, 3], data: bytesOf(a) },
    { name: 'w.f16', dtype: 'F16', shape: [3], data: bytesOf(f32ArrayToF16(b)) },
    { name: 'w.bf16', dtype: 'BF16', shape: [1, 3], data: bytesOf(f32ArrayToBf16(b)) },
  ];

  it('serializes and parses F32, F16 and BF16', () => {
    const file = serializeSafetensors(tensors, { format: 'pt' });
    const { tensors: infos, dataOffset, metadata } = parseSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect(dataOffset % 8).toBe(0);
    expect(infos.get('w.f32')).toMatchObject({ dtype: 'F32', shape: [2, 3], byteLength: 24 });
    expect(Array.from(tensorToF32(file, infos.get('w.f32')!, dataOffset))).toEqual(Array.from(a));
    expect(Array.from(tensorToF32(file, infos.get('w.f16')!, dataOffset))).toEqual(Array.from(b).map(roundF16));
    expect(Array.from(tensorToF32(file, infos.get('w.bf16')!, dataOffset))).toEqual(Array.from(bf16ArrayToF32(f32ArrayToBf16(b))));
    expect(Array.from(tensorToF16Bits(file, infos.get('w.f16')!, dataOffset))).toEqual(Array.from(f32ArrayToF16(b)));
    expect(Array.from(tensorToF16Bits(file, infos.get('w.f32')!, dataOffset))).toEqual(Array.from(f32ArrayToF16(a)));
  });

  it('reads tensors from an unaligned view of the file', () => {
    const file = serializeSafetensors(tensors);
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const view = shifted.subarray(1);
    const { tensors: infos, dataOffset } = parseSafetensors(view);
    expect(Array.from(tensorToF32(view, infos.get('w.f32')!, dataOffset))).toEqual(Array.from(a));
  });

  it('rejects a file shorter than the header length field', () => {
    expect(() => parseSafetensors(new Uint8Array(5))).toThrow(/truncated: expected at least 8 bytes.*got 5/);
  });

  it('rejects a header length beyond the file', () => {
    const file = rawFile({}, 0);
    new DataView(file.buffer).setUint32(0, 1000, true);
    expect(() => parseSafetensors(file)).toThrow(/header length 1000 exceeds the file.*expected at least 1008 bytes, got/);
    new DataView(file.buffer).setUint32(4, 7, true);
    expect(() => parseSafetensors(file)).toThrow(/header length \d+ is not sane/);
  });

  it('rejects a corrupt header', () => {
    const file = serializeSafetensors(tensors);
    file[9] = '#'.charCodeAt(0);
    expect(() => parseSafetensors(file)).toThrow(/header is not valid JSON/);
    expect(() => parseSafetensors(rawFile([1, 2], 0))).toThrow(/not a JSON object/);
  });

  it('rejects a truncated file, with expected and actual sizes', () => {
    const file = serializeSafetensors(tensors);
    expect(() => parseSafetensors(file.subarray(0, file.length - 10))).toThrow(
      new RegExp(`truncated: expected ${file.length} bytes, got ${file.length - 10}`),
    );
  });

  it('rejects an unsupported dtype, naming the tensor (or skips it when asked)', () => {
    const file = rawFile({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] }, x: { dtype: 'F32', shape: [1], data_offsets: [16, 20] } }, 20);
    expect(() => parseSafetensors(file)).toThrow(/tensor "ids" has unsupported dtype I64/);
    const parsed = parseSafetensors(file, { skipUnsupported: true });
    expect([...parsed.tensors.keys()]).toEqual(['x']);
    expect(parsed.skipped.get('ids')).toBe('I64');
    const weird = rawFile({ z: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }, 1);
    expect(() => parseSafetensors(weird, { skipUnsupported: true })).toThrow(/tensor "z" has unsupported dtype Q4/);
  });

  it('rejects bad offsets, sizes and overlaps', () => {
    const oob = rawFile({ x: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, 16);
    expect(() => parseSafetensors(oob)).toThrow(/tensor "x" data_offsets end 24 is out of bounds/);
    const reversed = rawFile({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 16);
    expect(() => parseSafetensors(reversed)).toThrow(/tensor "x": invalid data_offsets \[8,4\]/);
    const size = rawFile({ x: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, 8);
    expect(() => parseSafetensors(size)).toThrow(/tensor "x": data_offsets \[0, 8\] hold 8 bytes but F16 shape \[3\] needs 6/);
    const overlap = rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12);
    expect(() => parseSafetensors(overlap)).toThrow(/tensors "x" and "y" overlap/);
    const shape = rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4);
    expect(() => parseSafetensors(shape)).toThrow(/tensor "x": invalid shape/);
  });

  it('rejects what the fuzz tests found: duplicate keys, gaps, trailing bytes, prototype-named dtypes; writes a "__proto__" tensor', () => {
    const text = (t: string, data: number) => {
      const json = enc.encode(t);
      const out = new Uint8Array(8 + json.length + data);
      new DataView(out.buffer).setUint32(0, json.length, true);
      out.set(json, 8);
      return out;
    };
    const x = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    expect(() => parseSafetensors(text(`{"x":${x},"x":${x}}`, 4))).toThrow(/header names tensor "x" twice/);
    expect(() => parseSafetensors(text('{"x":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}', 4))).toThrow(/entry of tensor "x" has the key "dtype" twice/);
    expect(() => parseSafetensors(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8))).toThrow(/tensor "x" starts at data offset 4 but the data section starts at 0: 4 bytes belong to no tensor/);
    expect(() => parseSafetensors(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 6))).toThrow(/file has 2 bytes after the last tensor's data/);
    expect(() => parseSafetensors(rawFile({ x: { dtype: 'constructor', shape: [1], data_offsets: [0, 4] } }, 4), { skipUnsupported: true })).toThrow(/tensor "x" has unsupported dtype constructor/);
    const badUtf8 = text(`{"x":${x}}`, 4);
    badUtf8[10] = 0xff; // inside the name "x"
    expect(() => parseSafetensors(badUtf8)).toThrow(/header \(bytes 8 to \d+\) is not valid UTF-8/);
    const protoMeta = JSON.parse('{"__proto__":"kept"}') as Record<string, string>; // an own key, as in a file
    const file = serializeSafetensors([{ name: '__proto__', dtype: 'F32', shape: [1], data: new Uint8Array(4) }], protoMeta);
    const parsed = parseSafetensors(file);
    expect([...parsed.tensors.keys()]).toEqual(['__proto__']);
    expect(Object.entries(parsed.metadata)).toEqual([['__proto__', 'kept']]);
  });
});
