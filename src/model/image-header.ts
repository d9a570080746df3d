/**
 * Width, height and format from an encoded image's first bytes, without
 * decoding (PNG, JPEG, GIF, WebP, BMP). Callers refuse an image whose header
 * claims too many pixels before a decoder allocates them: a 60000 × 60000 PNG
 * is a few hundred bytes and would decode to 10 GB.
 *
 * The bytes come from anywhere (uploads, URLs, the HTTP server), so the
 * parser never throws: every read is bounds-checked, the JPEG marker walk
 * moves forward on every step, and anything it does not recognise — an
 * unknown format, a truncated or malformed header — is null. Null means "no
 * claim", not "no image": the decoder still decides (and refuses non-images).
 */

/** Largest image accepted anywhere (pixels): 4096 × 4096 = 16.8 megapixels. */
export const MAX_IMAGE_PIXELS = 16 * 2 ** 20;

/**
 * How many leading bytes to hand to imageHeader. Every format here states its
 * size in the first few dozen bytes, except JPEG, whose frame header follows
 * the APPn segments (EXIF, ICC profiles: up to 64 KiB each, a few of them).
 */
export const IMAGE_HEADER_BYTES = 256 << 10;

export type ImageFormat = 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp';

export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
}

/** The size an image's header claims, or null when the bytes do not start with a header this parser knows. */
export function imageHeader(b: Uint8Array): ImageHeader | null {
  const r = new Reader(b);
  if (r.ascii(0, '\x89PNG\r\n\x1a\n') && r.ascii(12, 'IHDR') && r.has(16, 8)) {
    return { format: 'png', width: r.u32be(16), height: r.u32be(20) };
  }
  if ((r.ascii(0, 'GIF87a') || r.ascii(0, 'GIF89a')) && r.has(6, 4)) {
    return { format: 'gif', width: r.u16le(6), height: r.u16le(8) };
  }
  if (r.ascii(0, 'RIFF') && r.ascii(8, 'WEBP')) return webp(r);
  if (r.u8(0) === 0xff && r.u8(1) === 0xd8 && r.u8(2) === 0xff) return jpeg(r);
  if (r.ascii(0, 'BM')) return bmp(r);
  return null;
}

function webp(r: Reader): ImageHeader | null {
  // VP8 (lossy): a 3-byte frame tag, the start code 9d 01 2a, then 14-bit sizes (2 bits of scale above them)
  if (r.ascii(12, 'VP8 ') && r.u8(23) === 0x9d && r.u8(24) === 0x01 && r.u8(25) === 0x2a && r.has(26, 4)) {
    return { format: 'webp', width: r.u16le(26) & 0x3fff, height: r.u16le(28) & 0x3fff };
  }
  // VP8L (lossless): signature 0x2f, then width − 1 and height − 1 as two 14-bit fields
  if (r.ascii(12, 'VP8L') && r.u8(20) === 0x2f && r.has(21, 4)) {
    const bits = r.u32le(21);
    return { format: 'webp', width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) };
  }
  // VP8X (extended): canvas width − 1 and height − 1 as 24-bit fields
  if (r.ascii(12, 'VP8X') && r.has(24, 6)) {
    return { format: 'webp', width: 1 + r.u24le(24), height: 1 + r.u24le(27) };
  }
  return null;
}

/** Start-of-frame markers: C0..CF but DHT (C4), JPG (C8) and DAC (CC), which share the range. */
const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

/** Walks the marker segments after SOI to the first start-of-frame; null at the scan, at a bad segment or at the end of the bytes. */
function jpeg(r: Reader): ImageHeader | null {
  let i = 2;
  // Every iteration moves i forward by at least one byte, so the walk ends within as many steps as there are bytes.
  while (r.has(i, 2)) {
    if (r.u8(i) !== 0xff) return null;
    const marker = r.u8(i + 1);
    if (marker === 0xff) {
      i += 1; // fill byte before a marker
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2; // TEM, RSTn, a stray SOI: no length field
      continue;
    }
    // EOI or the start of scan before any frame header: there is no size to read
    if (marker === 0xd9 || marker === 0xda || marker === 0x00) return null;
    if (!r.has(i + 2, 2)) return null;
    const length = r.u16be(i + 2); // counts itself, not the marker
    if (length < 2) return null;
    if (isSof(marker)) {
      // length(2) precision(1) height(2) width(2) components(1)
      if (length < 8 || !r.has(i + 2, 8)) return null;
      return { format: 'jpeg', height: r.u16be(i + 5), width: r.u16be(i + 7) };
    }
    i += 2 + length;
  }
  return null;
}

function bmp(r: Reader): ImageHeader | null {
  if (!r.has(14, 4)) return null;
  // the OS/2 core header (12 bytes) stores 16-bit sizes; every later variant signed 32-bit ones
  if (r.u32le(14) === 12) return r.has(18, 4) ? { format: 'bmp', width: r.u16le(18), height: r.u16le(20) } : null;
  if (!r.has(18, 8)) return null;
  // a negative height means rows stored top-down; the size is its magnitude
  return { format: 'bmp', width: Math.abs(r.i32le(18)), height: Math.abs(r.i32le(22)) };
}

/**
 * Reads over the bytes. u8 and ascii check their own bounds (-1 / false past the end); the wider
 * reads are only called after has(), so a DataView RangeError here is a parser bug (the fuzz test
 * looks for one).
 */
class Reader {
  private readonly v: DataView;
  constructor(private readonly b: Uint8Array) {
    this.v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  has(at: number, n: number): boolean {
    return at >= 0 && at + n <= this.b.length;
  }
  u8(at: number): number {
    return this.has(at, 1) ? this.b[at] : -1;
  }
  ascii(at: number, s: string): boolean {
    if (!this.has(at, s.length)) return false;
    for (let k = 0; k < s.length; k++) if (this.b[at + k] !== s.charCodeAt(k)) return false;
    return true;
  }
  u16be(at: number): number {
    return this.v.getUint16(at, false);
  }
  u16le(at: number): number {
    return this.v.getUint16(at, true);
  }
  u24le(at: number): number {
    return this.b[at] | (this.b[at + 1] << 8) | (this.b[at + 2] << 16);
  }
  u32be(at: number): number {
    return this.v.getUint32(at, false);
  }
  u32le(at: number): number {
    return this.v.getUint32(at, true);
  }
  i32le(at: number): number {
    return this.v.getInt32(at, true);
  }
}
