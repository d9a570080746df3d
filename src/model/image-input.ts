/**
 * Images as callers hand them over, in two steps:
 *
 *   readImage    URL (data:, blob:, http) / Blob / ImageBitmap / RGBA pixels
 *                → the encoded bytes or the pixels + a SHA-256 content key.
 *                No decoding: a known image (same key) needs nothing more.
 *   decodeImage  ReadImage → transformers.js RawImage (RGB), refusing bytes
 *                that are no image and images too large to process.
 *
 * Both read the size an encoded image's header claims (image-header.ts) and
 * refuse one over the limit before anything decodes it: the header is a few
 * bytes, the decoded image width × height × 4. Errors (ImageInputError) say
 * what was wrong and what to do; whatever a decoder throws on damaged bytes
 * comes out as the "not an image this page can read" ImageInputError.
 */
import type { RawImage } from '@huggingface/transformers';

import type { PixelData } from '../api/chat-types.ts';
import { IMAGE_HEADER_BYTES, imageHeader, MAX_IMAGE_PIXELS } from './image-header.ts';

export type { PixelData };
export { MAX_IMAGE_PIXELS };

export type ImageSource = string | Blob | ImageBitmap | PixelData;

export class ImageInputError extends Error {
  override name = 'ImageInputError';
}

/**
 * An image read but not decoded. `hash` is the content key: SHA-256 (hex) of
 * the encoded bytes, or for pixels `rgba<w>x<h>:` + SHA-256 of the RGBA bytes
 * (so equal bytes in another shape are another image).
 */
export type ReadImage =
  | { kind: 'encoded'; hash: string; blob: Blob }
  | { kind: 'pixels'; hash: string; width: number; height: number; data: Uint8ClampedArray | Uint8Array };

/**
 * Fetches / reads one image and hashes it, without decoding. Refuses what
 * needs no decoding to refuse: a failed fetch, an empty file, a header
 * claiming no pixels or too many, pixel data of the wrong length or too many
 * pixels. `label` names it in errors ("image 1").
 */
export async function readImage(input: ImageSource, label: string, maxPixels = MAX_IMAGE_PIXELS): Promise<ReadImage> {
  if (typeof input === 'string') input = await fetchImage(input, label);
  if (isBlob(input)) {
    if (input.size === 0) throw new ImageInputError(`${label}: the file is empty (0 bytes); choose a PNG, JPEG, WebP or GIF image`);
    const bytes = await blobBytes(input, label);
    checkHeader(bytes.subarray(0, IMAGE_HEADER_BYTES), label, maxPixels);
    return { kind: 'encoded', hash: await sha256(bytes), blob: input };
  }
  if (isPixelData(input)) {
    checkSize(input.width, input.height, label, maxPixels);
    if (input.data.length !== input.width * input.height * 4) {
      throw new ImageInputError(`${label}: pixel data has ${input.data.length} bytes, expected width × height × 4 (RGBA) = ${input.width * input.height * 4}`);
    }
    return pixels(input.width, input.height, input.data);
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    checkSize(input.width, input.height, label, maxPixels);
    return pixels(input.width, input.height, bitmapPixels(input));
  }
  throw new ImageInputError(`${label}: expected a URL, a Blob/File, an ImageBitmap or RGBA pixel data`);
}

/**
 * Decodes a read image to RGB, refusing unreadable bytes and images over `maxPixels` — by the
 * header's claim before decoding, and by the decoded size for formats whose header is not parsed.
 */
export async function decodeImage(read: ReadImage, label: string, maxPixels = MAX_IMAGE_PIXELS): Promise<RawImage> {
  const { RawImage } = await import('@huggingface/transformers');
  if (read.kind === 'pixels') {
    checkSize(read.width, read.height, label, maxPixels);
    return new RawImage(new Uint8ClampedArray(read.data), read.width, read.height, 4).rgb();
  }
  // a ReadImage may not come from readImage, so the header is checked here too (it costs a slice)
  checkHeader(await blobBytes(read.blob.slice(0, IMAGE_HEADER_BYTES), label), label, maxPixels);
  const unreadable = () => new ImageInputError(`${label}: this file is not an image this page can read; use a PNG, JPEG, WebP or GIF image`);
  // Decoders throw whatever they like on damaged bytes (DOMException, sharp's Error, RangeError
  // from a canvas); callers get one ImageInputError, and our own refusals pass through.
  const orUnreadable = (e: unknown): never => {
    throw e instanceof ImageInputError ? e : unreadable();
  };
  if (typeof createImageBitmap === 'function') {
    // browsers: check the size before turning a huge image into RGBA
    const bitmap = await createImageBitmap(read.blob).catch(orUnreadable);
    try {
      checkSize(bitmap.width, bitmap.height, label, maxPixels);
      return new RawImage(bitmapPixels(bitmap), bitmap.width, bitmap.height, 4).rgb();
    } catch (e) {
      return orUnreadable(e);
    } finally {
      bitmap.close();
    }
  }
  const sharp = await nodeSharp();
  if (!sharp) {
    const image = await RawImage.fromBlob(read.blob).catch(orUnreadable);
    checkSize(image.width, image.height, label, maxPixels);
    try {
      return image.rgb();
    } catch (e) {
      return orUnreadable(e);
    }
  }
  const { data, info } = await sharp(await blobBytes(read.blob, label), { limitInputPixels: Math.max(1, Math.floor(maxPixels)) })
    .rotate() // EXIF orientation, as browsers apply it
    .removeAlpha()
    .toColourspace('srgb') // grey, grey + alpha, CMYK, 16-bit → 8-bit RGB
    .raw()
    .toBuffer({ resolveWithObject: true })
    .catch(orUnreadable);
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) return orUnreadable(null);
  checkSize(info.width, info.height, label, maxPixels);
  return new RawImage(new Uint8ClampedArray(data.buffer, data.byteOffset, data.length), info.width, info.height, 3);
}

// ---------------------------------------------------------------- helpers

type Sharp = (typeof import('sharp'))['default'];

/**
 * sharp in Node (transformers.js depends on it), or null elsewhere. Used directly rather than
 * through RawImage.fromBlob because fromBlob cannot read grey + alpha images (its channel
 * conversion throws on 2 channels) and passes no limitInputPixels. The specifier is a variable
 * so browser bundlers leave the Node-only module alone; browsers never reach this.
 */
async function nodeSharp(): Promise<Sharp | null> {
  const name = 'sharp';
  try {
    const mod = (await import(/* @vite-ignore */ name)) as { default?: Sharp };
    return typeof mod.default === 'function' ? mod.default : null;
  } catch {
    return null;
  }
}

/** Refuses a header claiming no pixels or more than maxPixels; bytes that are no known header are left to the decoder. */
function checkHeader(head: Uint8Array, label: string, maxPixels: number): void {
  const h = imageHeader(head);
  if (h) checkSize(h.width, h.height, label, maxPixels, ` by its ${h.format.toUpperCase()} header`);
}

async function blobBytes(blob: Blob, label: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await blob.arrayBuffer());
  } catch (e) {
    // a File changed or deleted on disk since it was picked
    throw new ImageInputError(`${label}: could not read the file (${(e as Error).message}); pick it again`);
  }
}

async function pixels(width: number, height: number, data: Uint8ClampedArray | Uint8Array): Promise<ReadImage> {
  return { kind: 'pixels', hash: `rgba${width}x${height}:${await sha256(data)}`, width, height, data };
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

function bitmapPixels(bitmap: ImageBitmap): Uint8ClampedArray {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new ImageInputError('cannot read the image: no 2D canvas in this context');
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

function checkSize(width: number, height: number, label: string, maxPixels: number, source = ''): void {
  if (width === 0 || height === 0) throw new ImageInputError(`${label}: the image has no pixels (${width} × ${height}${source}); the file is damaged or not an image — choose another`);
  if (!(width > 0 && height > 0)) throw new ImageInputError(`${label}: the image size ${width} × ${height} is not a positive width and height`);
  if (width * height > maxPixels) {
    throw new ImageInputError(
      `${label}: the image is ${width} × ${height} = ${((width * height) / 1e6).toFixed(1)} megapixels${source}; the limit is ${(maxPixels / 1e6).toFixed(1)} megapixels — resize it and try again`,
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
