/**
 * Cheap checks on an image file before it goes to the engine: empty files,
 * files whose type is not an image, and images too large to decode — read
 * from the width and height in the file's header (PNG, JPEG, GIF, WebP,
 * BMP), so a 40-megapixel image is refused without decoding it. A file that
 * passes can still fail to decode (a text file renamed .png): the engine
 * says so, and the page shows its message.
 *
 * The header parser and the pixel limit are the model layer's (the engine
 * refuses the same images with the same limit), so the page and the engine
 * cannot disagree about what is too large.
 */
import { IMAGE_HEADER_BYTES, imageHeader, MAX_IMAGE_PIXELS, type ImageHeader } from '../model/image-header.ts';
import { svgRefusal } from './svg-check.ts';

export { MAX_IMAGE_PIXELS };
/** The largest image file the page accepts, in bytes. */
export const MAX_IMAGE_BYTES = 64 << 20;

export type ImageCheck = { ok: true; size: ImageHeader | null } | { ok: false; message: string };

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
  const head = new Uint8Array(await file.slice(0, IMAGE_HEADER_BYTES).arrayBuffer());
  const size = imageHeader(head);
  if (size && size.width * size.height > MAX_IMAGE_PIXELS) {
    const mp = (size.width * size.height) / 1e6;
    return {
      ok: false,
      message: `${name} is too large: ${size.width} × ${size.height} pixels (${mp.toFixed(1)} megapixels); ` +
        `this page takes images up to ${(MAX_IMAGE_PIXELS / 1e6).toFixed(1)} megapixels. Scale it down and try again.`,
    };
  }
  return { ok: true, size };
}

function fileName(file: Blob): string {
  return 'name' in file && typeof file.name === 'string' && file.name ? `"${file.name}"` : 'The image';
}

function mb(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(bytes < 10 << 20 ? 1 : 0);
}
