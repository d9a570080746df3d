/**
 * Images as callers hand them over → transformers.js RawImage, with the
 * checks a page needs: empty files, bytes that are no image, images too
 * large to process. Errors say what was wrong and what to do.
 */
import type { RawImage } from '@huggingface/transformers';

/** Decoded RGBA pixels (an ImageData, or the same shape from anywhere). */
export interface PixelData {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

export type ImageSource = string | Blob | ImageBitmap | PixelData;

/** Largest image accepted (pixels): 16 megapixels, e.g. 4096 × 4096. */
export const MAX_IMAGE_PIXELS = 16 * 2 ** 20;

export class ImageInputError extends Error {
  override name = 'ImageInputError';
}

export interface DecodedImage {
  image: RawImage;
  /** SHA-256 (hex) of the encoded bytes, or of the pixels when no bytes exist. */
  hash: string;
}

type RawImageClass = typeof RawImage;

/** Fetch/decode/validate one image. `label` names it in errors (e.g. "image 1"). */
export async function decodeImage(input: ImageSource, label: string, maxPixels = MAX_IMAGE_PIXELS): Promise<DecodedImage> {
  const { RawImage } = await import('@huggingface/transformers');
  if (typeof input === 'string') input = await fetchImage(input, label);
  if (isBlob(input)) return decodeBlob(RawImage, input, label, maxPixels);
  if (isPixelData(input)) {
    checkSize(input.width, input.height, label, maxPixels);
    if (input.data.length !== input.width * input.height * 4) {
      throw new ImageInputError(`${label}: pixel data has ${input.data.length} bytes, expected width × height × 4 (RGBA) = ${input.width * input.height * 4}`);
    }
    return { image: new RawImage(new Uint8ClampedArray(input.data), input.width, input.height, 4).rgb(), hash: await sha256(input.data) };
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    checkSize(input.width, input.height, label, maxPixels);
    const pixels = bitmapPixels(input);
    return { image: new RawImage(pixels, input.width, input.height, 4).rgb(), hash: await sha256(pixels) };
  }
  throw new ImageInputError(`${label}: expected a URL, a Blob/File, an ImageBitmap or RGBA pixel data`);
}

async function fetchImage(url: string, label: string): Promise<Blob> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new ImageInputError(`${label}: could not fetch ${shortUrl(url)} (${(e as Error).message}); check the URL or upload the file instead`);
  }
  if (!res.ok) throw new ImageInputError(`${label}: fetching ${shortUrl(url)} failed with HTTP ${res.status}`);
  return res.blob();
}

async function decodeBlob(RawImage: RawImageClass, blob: Blob, label: string, maxPixels: number): Promise<DecodedImage> {
  if (blob.size === 0) throw new ImageInputError(`${label}: the file is empty (0 bytes); choose a PNG, JPEG, WebP or GIF image`);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const hash = await sha256(bytes);
  const unreadable = () => new ImageInputError(`${label}: this file is not an image this page can read; use a PNG, JPEG, WebP or GIF image`);
  if (typeof createImageBitmap === 'function') {
    // browsers: check the size before turning a huge image into RGBA
    const bitmap = await createImageBitmap(blob).catch(() => {
      throw unreadable();
    });
    try {
      checkSize(bitmap.width, bitmap.height, label, maxPixels);
      return { image: new RawImage(bitmapPixels(bitmap), bitmap.width, bitmap.height, 4).rgb(), hash };
    } finally {
      bitmap.close();
    }
  }
  const image = await RawImage.fromBlob(blob).catch(() => {
    throw unreadable();
  });
  checkSize(image.width, image.height, label, maxPixels);
  return { image: image.rgb(), hash };
}

function bitmapPixels(bitmap: ImageBitmap): Uint8ClampedArray {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new ImageInputError('cannot read the image: no 2D canvas in this context');
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

function checkSize(width: number, height: number, label: string, maxPixels: number): void {
  if (width === 0 || height === 0) throw new ImageInputError(`${label}: the image has no pixels (${width} × ${height})`);
  if (width * height > maxPixels) {
    throw new ImageInputError(
      `${label}: the image is ${width} × ${height} = ${((width * height) / 1e6).toFixed(1)} megapixels; the limit is ${(maxPixels / 1e6).toFixed(1)} megapixels — resize it and try again`,
    );
  }
}

async function sha256(data: Uint8Array | Uint8ClampedArray): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function isBlob(v: unknown): v is Blob {
  return typeof Blob !== 'undefined' && v instanceof Blob;
}

function isPixelData(v: unknown): v is PixelData {
  const o = v as PixelData;
  return typeof o === 'object' && o !== null && Number.isInteger(o.width) && Number.isInteger(o.height) && (o.data instanceof Uint8ClampedArray || o.data instanceof Uint8Array);
}

function shortUrl(url: string): string {
  return url.startsWith('data:') ? 'the data: URL' : url.length > 80 ? url.slice(0, 77) + '…' : url;
}
