import { describe, expect, test } from 'vitest';
import { imageHeader } from '../model/image-header.ts';
import { checkImageFile, MAX_IMAGE_PIXELS } from './image-check.ts';

/** A PNG signature + IHDR chunk claiming width × height (no image data: enough for the header check). */
function pngHeader(width: number, height: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  const v = new DataView(b.buffer);
  v.setUint32(16, width);
  v.setUint32(20, height);
  b.set([8, 2, 0, 0, 0], 24);
  return b;
}

const bytes = (...xs: (number | string)[]) => new Uint8Array(xs.flatMap((x) => (typeof x === 'string' ? [...x].map((c) => c.charCodeAt(0)) : [x])));

describe('imageHeader', () => {
  test('PNG', () => expect(imageHeader(pngHeader(8000, 5000))).toEqual({ format: 'png', width: 8000, height: 5000 }));
  test('GIF', () => expect(imageHeader(bytes('GIF89a', 0x40, 0x01, 0xf0, 0x00))).toEqual({ format: 'gif', width: 320, height: 240 }));
  test('BMP (bottom-up height is negative)', () => {
    const b = new Uint8Array(26);
    b.set(bytes('BM'));
    new DataView(b.buffer).setInt32(18, 640, true);
    new DataView(b.buffer).setInt32(22, -480, true);
    expect(imageHeader(b)).toEqual({ format: 'bmp', width: 640, height: 480 });
  });
  test('JPEG: skips APP0, finds SOF0', () => {
    const app0 = [0xff, 0xe0, 0x00, 0x10, ...bytes('JFIF', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0)];
    const sof0 = [0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0xe0, 0x02, 0x80, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
    expect(imageHeader(new Uint8Array([0xff, 0xd8, ...app0, ...sof0]))).toEqual({ format: 'jpeg', width: 640, height: 480 });
  });
  test('WebP VP8X', () => {
    const b = new Uint8Array(30);
    b.set(bytes('RIFF', 0, 0, 0, 0, 'WEBP', 'VP8X'));
    b.set([0x3f, 0x1f, 0x00, 0x9f, 0x0f, 0x00], 24); // 8000 × 4000, stored minus one
    expect(imageHeader(b)).toEqual({ format: 'webp', width: 8000, height: 4000 });
  });
  test('text is not an image', () => expect(imageHeader(bytes('hello, this is not a PNG at all'))).toBeNull());
});

describe('checkImageFile', () => {
  test('a 0-byte file is refused as empty', async () => {
    const r = await checkImageFile(new File([], 'empty.png', { type: 'image/png' }));
    expect(r).toEqual({ ok: false, message: expect.stringContaining('empty (0 bytes)') });
  });
  test('a file whose type is not an image is refused', async () => {
    const r = await checkImageFile(new File(['hi'], 'notes.txt', { type: 'text/plain' }));
    expect(r.ok ? '' : r.message).toContain('is not an image');
  });
  test('a 40-megapixel PNG header is refused without decoding, naming the size and the limit', async () => {
    const r = await checkImageFile(new File([pngHeader(8000, 5000)], 'huge.png', { type: 'image/png' }));
    expect(r.ok ? '' : r.message).toMatch(/8000 × 5000 pixels \(40\.0 megapixels\).*up to 16\.8 megapixels/);
  });
  test('an image at the limit passes; a text file renamed .png passes (the engine refuses it at decode)', async () => {
    expect((await checkImageFile(new File([pngHeader(4096, MAX_IMAGE_PIXELS / 4096)], 'ok.png', { type: 'image/png' }))).ok).toBe(true);
    expect(await checkImageFile(new File(['just text'], 'fake.png', { type: 'image/png' }))).toEqual({ ok: true, size: null });
  });
});
