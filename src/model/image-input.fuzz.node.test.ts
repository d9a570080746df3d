/**
 * Fuzzed image bytes through readImage + decodeImage (Node: sharp decodes) and imageHeader
 * (docs/fuzzing.md). Seeds are tiny images of each format made here with sharp; properties:
 *
 *   valid images of any size / format decode to their size, and the header says the same
 *   damaged bytes (flips, inserts, deletes, truncation, spliced bytes, rewritten size fields)
 *     decode to a sane RGB image or are refused with an ImageInputError naming the image
 *   headers claiming too many pixels (or none) are refused before anything decodes them
 *   the name and type do not matter: images decode by content, non-images typed image/png are refused
 *   imageHeader on any bytes returns null or non-negative integers, never throws
 */
import fc from 'fast-check';
import { RawImage } from '@huggingface/transformers';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';

import { fuzzParams } from '../../test/fuzz.ts';
import { imageHeader } from './image-header.ts';
import { decodeImage, ImageInputError, MAX_IMAGE_PIXELS, readImage, type ReadImage } from './image-input.ts';

// Every sharp() call — decodeImage's and the seeds' — is counted, to show refusals come before decoding.
vi.mock('sharp', async (importOriginal) => {
  const real = (await importOriginal<typeof import('sharp')>()).default;
  return { default: vi.fn(real) };
});
const sharpCalls = vi.mocked(sharp);

/** A case slower than this is a hang (tiny images decode in milliseconds; a 16 MP one in well under a second). */
const CASE_MS = 10_000;

type Format = 'png' | 'png-ga' | 'png-palette' | 'jpeg' | 'jpeg-progressive' | 'webp' | 'webp-lossless' | 'webp-alpha' | 'gif';
const FORMATS: Format[] = ['png', 'png-ga', 'png-palette', 'jpeg', 'jpeg-progressive', 'webp', 'webp-lossless', 'webp-alpha', 'gif'];
const SIZES: [number, number][] = [[1, 1], [7, 3], [33, 17]];

interface Seed {
  format: Format;
  width: number;
  height: number;
  bytes: Uint8Array;
  /** Where the header states the size: rewritten by the mutations and the huge-header property. */
  fields: SizeField[];
}
type SizeField = { at: number; kind: 'u16le' | 'u16be' | 'u32be' | 'u24le-1' };

async function encode(format: Format, width: number, height: number, salt = 0): Promise<Uint8Array> {
  const alpha = format === 'png-ga' || format === 'webp-alpha';
  // a gradient, so the encoders have something to compress and the decoders something to decode
  const raw = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) raw.set([(i * 37 + salt) & 255, (i * 11) & 255, (salt * 7 + i) & 255, alpha ? (i * 53) & 255 : 255], i * 4);
  let s = sharp(raw, { raw: { width, height, channels: 4 } });
  if (!alpha) s = s.removeAlpha();
  switch (format) {
    case 'png': return new Uint8Array(await s.png().toBuffer());
    case 'png-ga': return new Uint8Array(await s.toColourspace('b-w').png().toBuffer());
    case 'png-palette': return new Uint8Array(await s.png({ palette: true }).toBuffer());
    case 'jpeg': return new Uint8Array(await s.jpeg().toBuffer());
    case 'jpeg-progressive': return new Uint8Array(await s.jpeg({ progressive: true }).toBuffer());
    case 'webp': case 'webp-alpha': return new Uint8Array(await s.webp().toBuffer());
    case 'webp-lossless': return new Uint8Array(await s.webp({ lossless: true }).toBuffer());
    case 'gif': return new Uint8Array(await s.gif().toBuffer());
  }
}

/** The size fields of an encoded seed, found from the format specs (not from image-header.ts, which this tests). */
function sizeFields(b: Uint8Array): SizeField[] {
  const ascii = (at: number, n: number) => String.fromCharCode(...b.subarray(at, at + n));
  if (ascii(1, 3) === 'PNG') return [{ at: 16, kind: 'u32be' }, { at: 20, kind: 'u32be' }];
  if (ascii(0, 3) === 'GIF') return [{ at: 6, kind: 'u16le' }, { at: 8, kind: 'u16le' }];
  if (ascii(0, 4) === 'RIFF') {
    const chunk = ascii(12, 4);
    if (chunk === 'VP8 ') return [{ at: 26, kind: 'u16le' }, { at: 28, kind: 'u16le' }];
    if (chunk === 'VP8X') return [{ at: 24, kind: 'u24le-1' }, { at: 27, kind: 'u24le-1' }];
    return []; // VP8L packs its sizes in 14-bit fields; the huge-header property writes them itself
  }
  for (let i = 2; i + 9 <= b.length; ) {
    const m = b[i + 1];
    if (m >= 0xc0 && m <= 0xc2) return [{ at: i + 5, kind: 'u16be' }, { at: i + 7, kind: 'u16be' }]; // height, width
    i += 2 + ((b[i + 2] << 8) | b[i + 3]);
  }
  throw new Error('seed without a known size field');
}

function writeField(b: Uint8Array, f: SizeField, value: number): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.kind === 'u32be') v.setUint32(f.at, value >>> 0);
  else if (f.kind === 'u16le') v.setUint16(f.at, value & 0xffff, true);
  else if (f.kind === 'u16be') v.setUint16(f.at, value & 0xffff);
  else b.set([(value - 1) & 255, ((value - 1) >> 8) & 255, ((value - 1) >> 16) & 255], f.at);
}

let seeds: Seed[] = [];
beforeAll(async () => {
  for (const format of FORMATS) {
    for (const [width, height] of SIZES) {
      const bytes = await encode(format, width, height);
      seeds.push({ format, width, height, bytes, fields: sizeFields(bytes) });
    }
  }
});
afterAll(() => {
  seeds = [];
});

const seedArb = () => fc.nat().map((i) => seeds[i % seeds.length]);

/** readImage + decodeImage, failing the case if it takes longer than CASE_MS. */
async function decode(blob: Blob, label: string): Promise<RawImage> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: decoding took over ${CASE_MS} ms`)), CASE_MS);
  });
  try {
    return await Promise.race([readImage(blob, label).then((r) => decodeImage(r, label)), hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** An RGB image within the limit, or an ImageInputError naming the image; anything else fails the case. */
async function decodedOrRefused(blob: Blob, label: string): Promise<RawImage | ImageInputError> {
  try {
    const img = await decode(blob, label);
    expect(img.channels).toBe(3);
    expect(Number.isInteger(img.width) && img.width >= 1 && Number.isInteger(img.height) && img.height >= 1).toBe(true);
    expect(img.width * img.height).toBeLessThanOrEqual(MAX_IMAGE_PIXELS);
    expect(img.data.length).toBe(img.width * img.height * 3);
    return img;
  } catch (e) {
    if (!(e instanceof ImageInputError)) throw new Error(`expected an ImageInputError, got ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`);
    expect(e.message.startsWith(`${label}: `)).toBe(true);
    return e;
  }
}

// ---------------------------------------------------------------- valid images

describe('valid images', () => {
  test('any format and size decodes to its size, and imageHeader reads the same size', async () => {
    const arb = fc.record({ format: fc.constantFrom(...FORMATS), width: fc.integer({ min: 1, max: 48 }), height: fc.integer({ min: 1, max: 48 }), salt: fc.nat(255) });
    await fc.assert(
      fc.asyncProperty(arb, async ({ format, width, height, salt }) => {
        const bytes = await encode(format, width, height, salt);
        expect(imageHeader(bytes)).toMatchObject({ width, height, format: format.split('-')[0] });
        const img = await decode(new Blob([bytes as Uint8Array<ArrayBuffer>]), 'image 1');
        expect([img.width, img.height, img.channels, img.data.length]).toEqual([width, height, 3, width * height * 3]);
      }),
      fuzzParams(),
    );
  });
});

// ---------------------------------------------------------------- damaged bytes

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; n: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; bytes: Uint8Array }
  | { kind: 'size'; field: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  fc.record({ kind: fc.constant('size' as const), field: fc.nat(1), value: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.nat(), fc.constantFrom(0, 1, 0xffff, 0x7fffffff, 0xffffffff)) }),
);

function mutate(seed: Seed, ms: Mutation[]): Uint8Array {
  let b = seed.bytes.slice();
  for (const m of ms) {
    // positions are taken modulo the current length, so every mutation lands inside the file
    const at = b.length === 0 ? 0 : m.kind === 'size' ? 0 : m.at % b.length;
    if (m.kind === 'flip' && b.length) b[at] ^= 1 << m.bit;
    else if (m.kind === 'insert') b = new Uint8Array([...b.subarray(0, at), ...m.bytes, ...b.subarray(at)]);
    else if (m.kind === 'delete') b = new Uint8Array([...b.subarray(0, at), ...b.subarray(at + m.n)]);
    else if (m.kind === 'truncate') b = b.slice(0, at);
    else if (m.kind === 'splice') b.set(m.bytes.subarray(0, Math.max(0, b.length - at)), at);
    else if (m.kind === 'size') {
      const f = seed.fields[m.field % Math.max(1, seed.fields.length)];
      if (f && f.at + 4 <= b.length) writeField(b, f, m.value);
    }
  }
  return b;
}

describe('damaged images', () => {
  test('random mutations decode to a sane RGB image or are refused with an ImageInputError naming the image, in bounded time', async () => {
    let slowest = 0;
    await fc.assert(
      fc.asyncProperty(seedArb(), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 9 }), async (seed, ms, n) => {
        const bytes = mutate(seed, ms);
        const t0 = performance.now();
        await decodedOrRefused(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: `image/${seed.format.split('-')[0]}` }), `image ${n}`);
        slowest = Math.max(slowest, performance.now() - t0);
      }),
      fuzzParams(),
    );
    expect(slowest).toBeLessThan(CASE_MS);
  });
});

// ---------------------------------------------------------------- headers claiming huge sizes

/** w, h with w × h over the limit, each at most `max` and at least `min`. */
const hugeArb = (max: number, min = 1) =>
  fc.integer({ min: Math.max(min, Math.ceil((MAX_IMAGE_PIXELS + 1) / max)), max }).chain((w) => fc.tuple(fc.constant(w), fc.integer({ min: Math.max(min, Math.floor(MAX_IMAGE_PIXELS / w) + 1), max })));

/** A seed of `format` with its header rewritten to claim w × h (VP8L and BMP are written here, the rest through sizeFields). */
function claim(format: Format | 'bmp', w: number, h: number): Uint8Array {
  if (format === 'bmp') {
    const b = new Uint8Array(54 + 4);
    const v = new DataView(b.buffer);
    b.set([0x42, 0x4d]);
    v.setUint32(2, b.length, true);
    v.setUint32(10, 54, true);
    v.setUint32(14, 40, true);
    v.setInt32(18, w, true);
    v.setInt32(22, -h, true);
    v.setUint16(26, 1, true);
    v.setUint16(28, 24, true);
    return b;
  }
  const seed = seeds.find((s) => s.format === format && s.width === 7)!;
  const b = seed.bytes.slice();
  if (format === 'webp-lossless') {
    const v = new DataView(b.buffer);
    const rest = v.getUint32(21, true) & 0xf0000000; // alpha hint + version bits stay
    v.setUint32(21, (rest | ((w - 1) & 0x3fff) | (((h - 1) & 0x3fff) << 14)) >>> 0, true);
    return b;
  }
  const [a, c] = seed.fields;
  // JPEG states height first
  if (format.startsWith('jpeg')) [a, c].forEach((f, i) => writeField(b, f, i === 0 ? h : w));
  else [a, c].forEach((f, i) => writeField(b, f, i === 0 ? w : h));
  return b;
}

const HUGE: [Format | 'bmp', fc.Arbitrary<[number, number]>][] = [
  ['png', hugeArb(0xffffffff)],
  ['gif', hugeArb(0xffff)],
  ['jpeg', hugeArb(0xffff)],
  ['jpeg-progressive', hugeArb(0xffff)],
  ['webp', hugeArb(0x3fff)],
  ['webp-lossless', hugeArb(0x4000)],
  ['webp-alpha', hugeArb(0x1000000)],
  ['bmp', hugeArb(0x7fffffff)],
];

describe('headers claiming too many pixels or none', () => {
  test('are refused by readImage and by decodeImage, naming the size and the limit, before sharp or RawImage sees the bytes', async () => {
    const fromBlob = vi.spyOn(RawImage, 'fromBlob');
    const cases = fc.oneof(...HUGE.map(([format, arb]) => arb.map(([w, h]) => ({ format, w, h }))));
    await fc.assert(
      fc.asyncProperty(cases, fc.constantFrom('image/png', 'image/jpeg', ''), async ({ format, w, h }, type) => {
        const blob = new Blob([claim(format, w, h) as Uint8Array<ArrayBuffer>], { type });
        expect(imageHeader(new Uint8Array(await blob.arrayBuffer()))).toMatchObject({ width: w, height: h });
        sharpCalls.mockClear();
        const mp = ((w * h) / 1e6).toFixed(1);
        const message = `image 2: the image is ${w} × ${h} = ${mp} megapixels by its ${format.split('-')[0].toUpperCase()} header; the limit is 16.8 megapixels — resize it and try again`;
        await expect(readImage(blob, 'image 2')).rejects.toThrow(new ImageInputError(message));
        // a ReadImage that did not come through readImage is checked again before decoding
        const read: ReadImage = { kind: 'encoded', hash: 'x', blob };
        await expect(decodeImage(read, 'image 2')).rejects.toThrow(new ImageInputError(message));
        expect(sharpCalls).not.toHaveBeenCalled();
        expect(fromBlob).not.toHaveBeenCalled();
      }),
      fuzzParams(),
    );
    fromBlob.mockRestore();
  });

  test('a zero width or height is refused as having no pixels, before decoding', async () => {
    const formats: Format[] = ['png', 'gif', 'jpeg', 'webp'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...formats), fc.integer({ min: 0, max: 0xffff }), fc.boolean(), async (format, other, zeroWidth) => {
        const [w, h] = zeroWidth ? [0, other & 0x3fff] : [other & 0x3fff, 0];
        sharpCalls.mockClear();
        await expect(readImage(new Blob([claim(format, w, h) as Uint8Array<ArrayBuffer>]), 'image 1')).rejects.toThrow(`image 1: the image has no pixels (${w} × ${h} by its`);
        expect(sharpCalls).not.toHaveBeenCalled();
      }),
      fuzzParams(),
    );
  });
});

// ---------------------------------------------------------------- names and types

describe('names and types', () => {
  test('an image decodes by its content whatever its name and type say', async () => {
    const names = fc.constantFrom('photo.png', 'photo.jpg', 'photo.gif', 'photo.webp', 'photo.bmp', 'photo.txt', 'photo', '.png');
    const types = fc.constantFrom('image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/octet-stream', 'text/plain', '');
    await fc.assert(
      fc.asyncProperty(seedArb(), names, types, async (seed, name, type) => {
        const img = await decode(new File([seed.bytes as Uint8Array<ArrayBuffer>], name, { type }), 'image 1');
        expect([img.width, img.height]).toEqual([seed.width, seed.height]);
      }),
      fuzzParams(),
    );
  });

  test('text, HTML, zip, PDF and random bytes typed image/png are refused as not an image', async () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const notImage = fc.oneof(
      fc.string({ maxLength: 200 }).map((s) => enc(`hello, ${s}`)),
      fc.string({ maxLength: 200 }).map((s) => enc(`<!doctype html><html><body><p>${s}</p></body></html>`)),
      fc.uint8Array({ maxLength: 200 }).map((b) => new Uint8Array([0x50, 0x4b, 0x03, 0x04, ...b])),
      fc.uint8Array({ maxLength: 200 }).map((b) => new Uint8Array([...enc('%PDF-1.7\n'), ...b])),
      fc.uint8Array({ minLength: 1, maxLength: 300 }).filter((b) => imageHeader(b) === null && b[0] !== 0x50), // no "P1".."P6" (netpbm, which sharp reads)
    );
    await fc.assert(
      fc.asyncProperty(notImage, async (bytes) => {
        const r = await decodedOrRefused(new File([bytes as Uint8Array<ArrayBuffer>], 'picture.png', { type: 'image/png' }), 'image 3');
        expect(r).toBeInstanceOf(ImageInputError);
        expect((r as ImageInputError).message).toBe('image 3: this file is not an image this page can read; use a PNG, JPEG, WebP or GIF image');
      }),
      fuzzParams(),
    );
  });
});

// ---------------------------------------------------------------- the parser alone

const MAGIC = [
  [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52],
  [0x47, 0x49, 0x46, 0x38, 0x39, 0x61],
  [0x42, 0x4d],
  [0xff, 0xd8, 0xff],
  [0x52, 0x49, 0x46, 0x46, 0, 0, 0, 0, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x20],
  [0x52, 0x49, 0x46, 0x46, 0, 0, 0, 0, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c],
  [0x52, 0x49, 0x46, 0x46, 0, 0, 0, 0, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x58],
];

function saneHeader(b: Uint8Array): boolean {
  const h = imageHeader(b); // throwing fails the property
  if (h === null) return true;
  return ['png', 'jpeg', 'gif', 'webp', 'bmp'].includes(h.format) && [h.width, h.height].every((n) => Number.isSafeInteger(n) && n >= 0);
}

describe('imageHeader', () => {
  test('random bytes: null or non-negative integers, never a throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), saneHeader), fuzzParams());
  });

  test('a known magic number followed by random bytes (every parser branch, truncated anywhere)', () => {
    fc.assert(fc.property(fc.constantFrom(...MAGIC), fc.uint8Array({ maxLength: 300 }), (m, rest) => saneHeader(new Uint8Array([...m, ...rest]))), fuzzParams());
  });

  test('mutated seeds, cut at any length (also as views at an offset into a larger buffer)', () => {
    fc.assert(
      fc.property(seedArb(), fc.array(mutationArb, { minLength: 1, maxLength: 6 }), fc.nat(16), (seed, ms, offset) => {
        const b = mutate(seed, ms);
        const big = new Uint8Array(offset + b.length + 7);
        big.set(b, offset);
        return saneHeader(b) && saneHeader(big.subarray(offset, offset + b.length)) && JSON.stringify(imageHeader(b)) === JSON.stringify(imageHeader(big.subarray(offset, offset + b.length)));
      }),
      fuzzParams(),
    );
  });

  test('a JPEG marker walk over 256 KiB of fill bytes, RSTn markers and empty segments ends', () => {
    const patterns = [[0xff], [0xff, 0x01], [0xff, 0xd0], [0xff, 0xe0, 0x00, 0x02], [0xff, 0xfe, 0x00, 0x03, 0x00]];
    fc.assert(
      fc.property(fc.constantFrom(...patterns), fc.integer({ min: 0, max: 256 << 10 }), (pattern, n) => {
        const b = new Uint8Array(2 + n);
        for (let i = 2; i < b.length; i++) b[i] = pattern[(i - 2) % pattern.length];
        b.set([0xff, 0xd8]);
        return saneHeader(b);
      }),
      fuzzParams(),
    );
  });
});
