/**
 * Cheap checks on an image file before it goes to the engine: empty files,
 * files whose type is not an image, and images too large to decode — read
 * from the width and height in the file's header (PNG, JPEG, GIF, WebP,
 * BMP), so a 40-megapixel image is refused without decoding it. A file that
 * passes can still fail to decode (a text file renamed .png): the engine
 * says so, and the page shows its message.
 */
import { svgRefusal } from './svg-check.ts';

/** The largest image the page accepts, in pixels (16 megapixels, e.g. 4000 × 4000). */
export const MAX_IMAGE_PIXELS = 16_000_000;
/** The largest image file the page accepts, in bytes. */
export const MAX_IMAGE_BYTES = 64 << 20;

export interface ImageSize {
  width: number;
  height: number;
  format: 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp';
}

export type ImageCheck = { ok: true; size: ImageSize | null } | { ok: false; message: string };

const FORMATS = 'PNG, JPEG, WebP, GIF or BMP';

/** Checks a picked, dropped or pasted file; `name` is how the message refers to it. */
export async function checkImageFile(file: Blob, name = fileName(file)): Promise<ImageCheck> {
  if (file.size === 0) return { ok: false, message: `${name} is empty (0 bytes): pick an image file (${FORMATS}).` };
  const svg = await svgRefusal(file, name); // a document that can carry script (svg-check.ts), whatever its name and type say
  if (svg) return { ok: false, message: svg };
  if (file.type && !file.type.startsWith('image/')) {
    return { ok: false, message: `${name} is not an image (its type is ${file.type}): pick an image file (${FORMATS}).` };
  }
  if (file.size > MAX_IMAGE_BYTES) {
    return { ok: false, message: `${name} is too large (${mb(file.size)} MB); this page takes image files up to ${mb(MAX_IMAGE_BYTES)} MB.` };
  }
  const head = new Uint8Array(await file.slice(0, 256 << 10).arrayBuffer());
  const size = imageSize(head);
  if (size && size.width * size.height > MAX_IMAGE_PIXELS) {
    const mp = (size.width * size.height) / 1e6;
    return {
      ok: false,
      message: `${name} is too large: ${size.width} × ${size.height} pixels (${mp.toFixed(1)} megapixels); ` +
        `this page takes images up to ${MAX_IMAGE_PIXELS / 1e6} megapixels. Scale it down and try again.`,
    };
  }
  return { ok: true, size };
}

/** Width and height from an image file's first bytes, or null when the header is not one of the known formats. */
export function imageSize(b: Uint8Array): ImageSize | null {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (at: number, s: string) => b.length >= at + s.length && [...s].every((c, i) => b[at + i] === c.charCodeAt(0));
  if (b.length >= 24 && b[0] === 0x89 && ascii(1, 'PNG') && ascii(12, 'IHDR')) {
    return { format: 'png', width: v.getUint32(16), height: v.getUint32(20) };
  }
  if (b.length >= 10 && ascii(0, 'GIF8')) return { format: 'gif', width: v.getUint16(6, true), height: v.getUint16(8, true) };
  if (b.length >= 26 && ascii(0, 'BM')) return { format: 'bmp', width: Math.abs(v.getInt32(18, true)), height: Math.abs(v.getInt32(22, true)) };
  if (b.length >= 30 && ascii(0, 'RIFF') && ascii(8, 'WEBP')) return webpSize(b, v, ascii);
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(b, v);
  return null;
}

function webpSize(b: Uint8Array, v: DataView, ascii: (at: number, s: string) => boolean): ImageSize | null {
  if (ascii(12, 'VP8 ')) return { format: 'webp', width: v.getUint16(26, true) & 0x3fff, height: v.getUint16(28, true) & 0x3fff };
  if (ascii(12, 'VP8L')) {
    const [b0, b1, b2, b3] = [b[21], b[22], b[23], b[24]];
    return { format: 'webp', width: 1 + (((b1 & 0x3f) << 8) | b0), height: 1 + (((b3 & 0xf) << 10) | (b2 << 2) | ((b1 & 0xc0) >> 6)) };
  }
  if (ascii(12, 'VP8X')) {
    const u24 = (at: number) => b[at] | (b[at + 1] << 8) | (b[at + 2] << 16);
    return { format: 'webp', width: 1 + u24(24), height: 1 + u24(27) };
  }
  return null;
}

/** Walks the JPEG markers to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC). */
function jpegSize(b: Uint8Array, v: DataView): ImageSize | null {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) { i++; continue; } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) { i += 2; continue; } // no length
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { format: 'jpeg', height: v.getUint16(i + 5), width: v.getUint16(i + 7) };
    }
    i += 2 + v.getUint16(i + 2);
  }
  return null;
}

function fileName(file: Blob): string {
  return 'name' in file && typeof file.name === 'string' && file.name ? `"${file.name}"` : 'The image';
}

function mb(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(bytes < 10 << 20 ? 1 : 0);
}
