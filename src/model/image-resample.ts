/**
 * Pillow's image resize, in TypeScript, to the byte: the same filters, the
 * same coefficient windows, the same 22-bit fixed-point accumulation and
 * rounding, horizontal pass then vertical, nearest by Pillow's incremental
 * affine stepping.
 *
 * Why not transformers.js's `RawImage.resize`: it is sharp's libvips in Node
 * and a canvas `drawImage` in browsers (which ignores the filter), so one
 * picture gave different pixels — and on the shapes VLM, different answers —
 * in the two. The Python processors these models were trained and
 * referenced with resize with Pillow, so matching Pillow makes the engine's
 * pixels equal to theirs in every environment (image-resample.node.test.ts
 * checks it against Pillow's own output, odd sizes and every filter).
 *
 * Filters are numbered as Pillow's and transformers.js's `resample`:
 * 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming.
 */

import type { RawImage } from '@huggingface/transformers';

/** Bumped if the pixels this file computes ever change (it is part of image cache keys). */
export const RESAMPLE_VERSION = 'pillow-9';

export interface Pixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: number;
}

interface Filter {
  support: number;
  weight(x: number): number;
}

const sinc = (x: number): number => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));

// Pillow writes Hamming's constants as C floats; the window must use the same values.
const HAMMING_A = Math.fround(0.54);
const HAMMING_B = Math.fround(0.46);

const FILTERS: Record<number, Filter> = {
  4: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  2: { support: 1, weight: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
  5: {
    support: 1,
    weight: (x) => {
      x = Math.abs(x);
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (HAMMING_A + HAMMING_B * Math.cos(x));
    },
  },
  3: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  1: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

/** Per output index: the first input index, the tap count, and fixed-point weights (ksize apart). */
interface Coefficients {
  start: Int32Array;
  taps: Int32Array;
  ksize: number;
  weights: Float64Array;
}

function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const taps = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      w[i] = filter.weight((i + lo - center + 0.5) / filterScale);
      sum += w[i];
    }
    for (let i = 0; i < n; i++) {
      const v = sum !== 0 ? w[i] / sum : w[i];
      // C's (int) truncates toward zero; Pillow rounds half away from zero that way
      weights[o * ksize + i] = Math.trunc(v < 0 ? v * ONE - 0.5 : v * ONE + 0.5);
    }
    start[o] = lo;
    taps[o] = n;
  }
  return { start, taps, ksize, weights };
}

const clip8 = (acc: number): number => Math.min(255, Math.max(0, Math.floor(acc / ONE)));

/** Resamples along x (rows rowFrom…rowFrom+rows of `src`), then along y. */
function horizontal(src: Pixels, outWidth: number, rowFrom: number, rows: number, c: Coefficients): Pixels {
  const { channels: ch, width } = src;
  const out = new Uint8Array(outWidth * rows * ch);
  const d = src.data, wt = c.weights;
  for (let y = 0; y < rows; y++) {
    const row = (y + rowFrom) * width * ch;
    for (let x = 0; x < outWidth; x++) {
      const k = x * c.ksize, n = c.taps[x], first = row + c.start[x] * ch, o = (y * outWidth + x) * ch;
      if (ch === 3) {
        // the usual case, one pass over the taps for all three channels (~2x faster than per channel)
        let r = ONE / 2, g = ONE / 2, b = ONE / 2;
        for (let i = 0, at = first; i < n; i++, at += 3) {
          const w = wt[k + i];
          r += d[at] * w;
          g += d[at + 1] * w;
          b += d[at + 2] * w;
        }
        out[o] = clip8(r);
        out[o + 1] = clip8(g);
        out[o + 2] = clip8(b);
        continue;
      }
      for (let b = 0; b < ch; b++) {
        let acc = ONE / 2;
        for (let i = 0; i < n; i++) acc += d[first + i * ch + b] * wt[k + i];
        out[o + b] = clip8(acc);
      }
    }
  }
  return { data: out, width: outWidth, height: rows, channels: ch };
}

function vertical(src: Pixels, outHeight: number, startShift: number, c: Coefficients): Pixels {
  const { channels: ch, width } = src;
  const stride = width * ch;
  const out = new Uint8Array(width * outHeight * ch);
  const d = src.data, acc = new Float64Array(stride);
  for (let y = 0; y < outHeight; y++) {
    const k = y * c.ksize;
    const first = (c.start[y] - startShift) * stride;
    acc.fill(ONE / 2);
    // tap by tap over whole rows, read along memory (integer sums: exact in any order)
    for (let i = 0; i < c.taps[y]; i++) {
      const w = c.weights[k + i], at = first + i * stride;
      for (let x = 0; x < stride; x++) acc[x] += d[at + x] * w;
    }
    for (let x = 0; x < stride; x++) out[y * stride + x] = clip8(acc[x]);
  }
  return { data: out, width, height: outHeight, channels: ch };
}

/** Pillow's NEAREST: source index = floor of an offset stepped by the scale (Pillow accumulates it, so do we). */
function nearestIndex(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  const step = inSize / outSize;
  let at = step * 0.5;
  for (let o = 0; o < outSize; o++, at += step) idx[o] = Math.min(Math.trunc(at), inSize - 1);
  return idx;
}

function nearest(src: Pixels, width: number, height: number): Pixels {
  const { channels: ch } = src;
  const xs = nearestIndex(src.width, width);
  const ys = nearestIndex(src.height, height);
  const out = new Uint8Array(width * height * ch);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (ys[y] * src.width + xs[x]) * ch;
      for (let b = 0; b < ch; b++) out[(y * width + x) * ch + b] = src.data[from + b];
    }
  }
  return { data: out, width, height, channels: ch };
}

/** `src` resized to width × height as Pillow's `Image.resize(size, resample)` does (interleaved 8-bit channels). */
export function resample(src: Pixels, width: number, height: number, filterId: number): Pixels {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize: the target size must be positive integers, got ${width} × ${height}`);
  }
  if (src.data.length !== src.width * src.height * src.channels) {
    throw new RangeError(`resize: ${src.data.length} bytes for a ${src.width} × ${src.height} image of ${src.channels} channels`);
  }
  if (width === src.width && height === src.height) return { ...src, data: new Uint8Array(src.data) };
  if (filterId === 0) return nearest(src, width, height);
  const filter = FILTERS[filterId];
  if (!filter) throw new RangeError(`resize: unknown resample filter ${filterId}; use 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box or 5 hamming`);
  const cx = coefficients(src.width, width, filter);
  const cy = coefficients(src.height, height, filter);
  let img = src;
  let shift = 0;
  if (width !== src.width) {
    // only the rows the vertical pass will read
    const first = cy.start[0];
    const last = cy.start[height - 1] + cy.taps[height - 1];
    img = horizontal(src, width, first, last - first, cx);
    shift = first;
  }
  return height !== src.height ? vertical(img, height, shift, cy) : img;
}

const FILTER_IDS: Record<string, number> = { nearest: 0, lanczos: 1, bilinear: 2, bicubic: 3, box: 4, hamming: 5 };

/**
 * `image` with its `resize` (which transformers.js's image processors call) replaced by
 * Pillow's, on this image and on every image resized from it.
 */
export async function withPillowResize(image: RawImage): Promise<RawImage> {
  const { RawImage: Raw } = await import('@huggingface/transformers');
  const patch = (img: RawImage): RawImage => {
    img.resize = async (width: number, height: number, options: { resample?: number | string } = {}) => {
      const r = options.resample ?? 2;
      const id = typeof r === 'number' ? r : FILTER_IDS[r];
      if (id === undefined) throw new RangeError(`resize: unknown resample filter "${r}"; use one of ${Object.keys(FILTER_IDS).join(', ')}`);
      const out = resample(img, width, height, id);
      return patch(new Raw(new Uint8ClampedArray(out.data.buffer), out.width, out.height, out.channels as 1 | 2 | 3 | 4));
    };
    return img;
  };
  return patch(image);
}
