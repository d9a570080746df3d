/**
 * Images in Node (sharp underneath): cases the image fuzzer (image-input.fuzz.node.test.ts)
 * found, kept as plain tests.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage, ImageInputError, readImage } from './image-input.ts';

/** A PNG of `w` × `h`: RGB, or grey + alpha (sharp keeps the alpha through 'b-w'). */
const png = async (w: number, h: number, greyAlpha = false) =>
  new Blob([new Uint8Array(await sharp({ create: { width: w, height: h, channels: greyAlpha ? 4 : 3, background: { r: 200, g: 10, b: 10, alpha: 0.5 } } }).toColourspace(greyAlpha ? 'b-w' : 'srgb').png().toBuffer())], { type: 'image/png' });

describe('decoding images (fuzz regressions)', () => {
  it('a grey + alpha PNG decodes to RGB (transformers.js RawImage.fromBlob threw on 2 channels)', async () => {
    const blob = await png(5, 3, true);
    expect((await sharp(new Uint8Array(await blob.arrayBuffer())).metadata()).channels).toBe(2);
    const img = await decodeImage(await readImage(blob, 'image 1'), 'image 1');
    expect([img.width, img.height, img.channels]).toEqual([5, 3, 3]);
  });

  it('a PNG whose header claims 60000 × 60000 is refused from its header by readImage, which decodes nothing', async () => {
    const bytes = new Uint8Array(await (await png(4, 4)).arrayBuffer());
    new DataView(bytes.buffer).setUint32(16, 60000); // IHDR width
    new DataView(bytes.buffer).setUint32(20, 60000); // IHDR height
    const p = readImage(new Blob([bytes], { type: 'image/png' }), 'image 2');
    await expect(p).rejects.toBeInstanceOf(ImageInputError);
    await expect(p).rejects.toThrow(/image 2: the image is 60000 × 60000 = 3600\.0 megapixels by its PNG header; the limit is 16\.8 megapixels/);
  });

  it('bytes that are no image, typed image/png, are refused as unreadable', async () => {
    const read = await readImage(new Blob(['<html>not an image</html>'], { type: 'image/png' }), 'image 3');
    await expect(decodeImage(read, 'image 3')).rejects.toThrow(/image 3: this file is not an image this page can read/);
  });
});
