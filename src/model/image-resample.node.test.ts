import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { resample, withPillowResize } from './image-resample.ts';
import { decodeImage, readImage } from './image-input.ts';

interface Case { seed: number; width: number; height: number; channels: number; outWidth: number; outHeight: number; filter: number; out: string }
interface Real { image: string; outWidth: number; outHeight: number; sha256: string }
const fixture = JSON.parse(readFileSync('test/pillow-resample.json', 'utf8')) as { cases: Case[]; ood: Real[] };
const OOD = 'public/models/tiny-vlm-shapes/testset-ood';

/** The fixture's LCG bytes (scripts/make_pillow_resample_fixture.py). */
function lcgBytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt(seed);
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245n + 12345n) % 2n ** 31n;
    out[i] = Number((x >> 16n) & 255n);
  }
  return out;
}

describe('resample = Pillow', () => {
  it.each(fixture.cases.map((c) => [`${c.width}×${c.height}×${c.channels} → ${c.outWidth}×${c.outHeight} filter ${c.filter}`, c] as const))('%s', (_, c) => {
    const src = { data: lcgBytes(c.seed, c.width * c.height * c.channels), width: c.width, height: c.height, channels: c.channels };
    const out = resample(src, c.outWidth, c.outHeight, c.filter);
    expect([out.width, out.height, out.channels]).toEqual([c.outWidth, c.outHeight, c.channels]);
    expect(Buffer.from(out.data).toString('hex')).toBe(c.out);
  });

  it.each(fixture.ood.map((r) => [r.image, r] as const))('LANCZOS of the OOD picture %s to the processor size', async (_, r) => {
    const read = await readImage(new Blob([readFileSync(`${OOD}/${r.image}`)], { type: 'image/png' }), r.image);
    const img = await decodeImage(read, r.image);
    const out = resample({ data: img.data, width: img.width, height: img.height, channels: img.channels }, r.outWidth, r.outHeight, 1);
    expect(createHash('sha256').update(out.data).digest('hex')).toBe(r.sha256);
  });

  it('refuses bad sizes, short data and unknown filters with what to use', () => {
    const src = { data: new Uint8Array(12), width: 2, height: 2, channels: 3 };
    expect(() => resample(src, 0, 2, 1)).toThrow(/positive integers/);
    expect(() => resample(src, 1.5, 2, 1)).toThrow(/positive integers/);
    expect(() => resample({ ...src, data: new Uint8Array(11) }, 1, 1, 1)).toThrow(/11 bytes for a 2 × 2 image of 3 channels/);
    expect(() => resample(src, 1, 1, 9)).toThrow(/unknown resample filter 9; use 0 nearest/);
  });

  it('returns a copy at the same size', () => {
    const src = { data: lcgBytes(7, 12), width: 2, height: 2, channels: 3 };
    const out = resample(src, 2, 2, 1);
    expect(out.data).toEqual(src.data);
    expect(out.data).not.toBe(src.data);
  });

  it("replaces a RawImage's resize (numbered or named filters), also on the images it returns", async () => {
    const { RawImage } = await import('@huggingface/transformers');
    const data = lcgBytes(11, 17 * 13 * 3);
    const img = await withPillowResize(new RawImage(new Uint8ClampedArray(data), 17, 13, 3));
    const once = await img.resize(9, 7, { resample: 'bicubic' });
    expect(Array.from(once.data)).toEqual(Array.from(resample({ data, width: 17, height: 13, channels: 3 }, 9, 7, 3).data));
    const twice = await once.resize(4, 5, { resample: 1 });
    expect(Array.from(twice.data)).toEqual(Array.from(resample({ data: once.data, width: 9, height: 7, channels: 3 }, 4, 5, 1).data));
    await expect(img.resize(3, 3, { resample: 'cubic' })).rejects.toThrow(/unknown resample filter "cubic"; use one of nearest, lanczos/);
  });
});
