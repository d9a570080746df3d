/**
 * preparePrompt on a real processor (tiny-vlm-idefics3, image splitting) and
 * a real ImageFeatureCache on the GPU, with a counting fake encoder: a turn
 * that resends known images decodes, preprocesses and encodes nothing; new
 * or evicted images are decoded and encoded again; bad images give the clear
 * errors and leave nothing pinned; concurrent requests share one encoder run.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { storageBuffer } from '../gpu/buffers.ts';
import type { Gpu } from '../gpu/context.ts';
import type { PixelData } from '../model/image-input.ts';
import { MultimodalProcessor, type MultimodalMessage, type PreparedImage } from '../model/multimodal-processor.ts';
import { resolveSource } from '../model/source.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { parseVisionConfig } from '../model/vision-config.ts';
import { ImageFeatureCache } from './image-features.ts';
import { preparePrompt, type ImagePromptDeps } from './prompt-images.ts';
import { loadOrt } from '../model/vision-encoder.ts';

// browsers: transformers.js resizes Idefics3 images with onnxruntime-web, whose wasm must come from here
beforeAll(async () => {
  await loadOrt();
});

let gpu: Gpu;
let processor: MultimodalProcessor;
let png: Blob;
beforeAll(async () => {
  gpu = await testGpu();
  const source = resolveSource(modelRef('tiny-vlm-idefics3'));
  const spec = parseVisionConfig(JSON.parse(new TextDecoder().decode(await source.readFile('config.json'))) as Record<string, unknown>)!;
  processor = await MultimodalProcessor.load(source, await loadTokenizer(source), spec);
  png = new Blob([(await source.readFile('reference/image.png')) as Uint8Array<ArrayBuffer>], { type: 'image/png' });
});

function picture(width: number, height: number, seed: number): PixelData {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + seed * 101) & 255;
  return { width, height, data };
}

/** A fake encoder: 16 bytes per feature row, counted; each run waits for `gate` when given. */
function deps(features: ImageFeatureCache, gate?: Promise<void>): ImagePromptDeps & { encodes: PreparedImage[] } {
  const encodes: PreparedImage[] = [];
  return {
    processor,
    features,
    encodes,
    async encode(img) {
      encodes.push(img);
      await gate;
      return storageBuffer(gpu, 'test:features', img.numFeatures * 16);
    },
  };
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 1));
}

const counts = () => ({ decodes: processor.decodes, imageCalls: processor.imageCalls });
const since = (c: ReturnType<typeof counts>) => ({ decodes: processor.decodes - c.decodes, imageCalls: processor.imageCalls - c.imageCalls });

function releaseAll(cache: ImageFeatureCache, p: { images: { key: string }[] }): void {
  for (const img of p.images) cache.release(img.key);
}

describe('preparePrompt', () => {
  const A = picture(120, 80, 1);
  const B = picture(60, 140, 2);
  const turn1 = (): MultimodalMessage[] => [{ role: 'user', content: [{ type: 'image', image: png }, { type: 'text', text: 'What is this?' }] }];
  const turn2 = (): MultimodalMessage[] => [
    ...turn1(),
    { role: 'assistant', content: 'A picture.' },
    { role: 'user', content: [{ type: 'text', text: 'And next to this one?' }, { type: 'image', image: A }] },
  ];

  it('the same two-turn conversation again: 0 decodes, 0 processor image calls, 0 encodes, same ids and buffers', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const d = deps(cache);
    const first = await preparePrompt(d, turn2());
    expect(d.encodes).toHaveLength(2);
    const c = counts();
    const again = await preparePrompt(d, turn2());
    expect(since(c)).toEqual({ decodes: 0, imageCalls: 0 });
    expect(d.encodes).toHaveLength(2);
    expect(again.ids).toEqual(first.ids);
    expect(again.images.map((i) => i.features)).toEqual(first.images.map((i) => i.features));
    expect(again.images[0].features).toBe(first.images[0].features);
    expect(again.images.map((i) => i.runs)).toEqual(first.images.map((i) => i.runs));
    // the uncached path gives the same prompt
    expect(first.ids).toEqual((await processor.prepare(turn2())).ids);
    // pinned once per call, until released
    expect(first.images.map((i) => cache.users(i.key))).toEqual([2, 2]);
    releaseAll(cache, first);
    releaseAll(cache, again);
    expect(first.images.map((i) => cache.users(i.key))).toEqual([0, 0]);
    expect(cache.size).toBe(2);
    cache.clear();
  });

  it('a new image in turn 2 decodes and encodes only that image', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const d = deps(cache);
    const p1 = await preparePrompt(d, turn1());
    const c = counts();
    const p2 = await preparePrompt(d, turn2());
    expect(since(c)).toEqual({ decodes: 1, imageCalls: 1 });
    expect(d.encodes).toHaveLength(2);
    expect(d.encodes[1].key).toBe(p2.images[1].key);
    expect(p2.images[0].features).toBe(p1.images[0].features);
    expect(p2.ids).toEqual((await processor.prepare(turn2())).ids);
    releaseAll(cache, p1);
    releaseAll(cache, p2);
    cache.clear();
  });

  it('evicted features: the image is decoded and encoded again, same prompt', async () => {
    const cache = new ImageFeatureCache(gpu, 1); // nothing idle stays
    const d = deps(cache);
    const p1 = await preparePrompt(d, turn1());
    releaseAll(cache, p1);
    expect(cache.size).toBe(0);
    const c = counts();
    const p2 = await preparePrompt(d, turn1());
    expect(since(c)).toEqual({ decodes: 1, imageCalls: 1 });
    expect(d.encodes).toHaveLength(2);
    expect(d.encodes[1].pixelValues.dims).toEqual(d.encodes[0].pixelValues.dims);
    expect(p2.ids).toEqual(p1.ids);
    expect(p2.images[0].runs).toEqual(p1.images[0].runs);
    expect(cache.users(p2.images[0].key)).toBe(1);
    releaseAll(cache, p2);
    cache.clear();
  });

  it('requests with the same new image at once share one encoder run', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const g = gate();
    const d = deps(cache, g.promise);
    const msgs = (): MultimodalMessage[] => [{ role: 'user', content: [{ type: 'image', image: B }, { type: 'text', text: 'Hi' }] }];
    const both = Promise.all([preparePrompt(d, msgs()), preparePrompt(d, msgs())]);
    await until(() => d.encodes.length > 0);
    g.open();
    const [x, y] = await both;
    expect(d.encodes).toHaveLength(1);
    expect(x.images[0].features).toBe(y.images[0].features);
    expect(cache.users(x.images[0].key)).toBe(2);
    // a request whose image's expansion is known while its encode runs: it joins that run, decoding nothing
    const cache2 = new ImageFeatureCache(gpu, 1 << 20);
    const g2 = gate();
    const d2 = deps(cache2, g2.promise);
    const first = preparePrompt(d2, msgs());
    await until(() => d2.encodes.length > 0);
    const c = counts();
    const second = preparePrompt(d2, msgs());
    await new Promise((r) => setTimeout(r, 10));
    g2.open();
    const [u, v] = await Promise.all([first, second]);
    expect(d2.encodes).toHaveLength(1);
    expect(since(c)).toEqual({ decodes: 0, imageCalls: 0 });
    expect(u.images[0].features).toBe(v.images[0].features);
    expect(u.ids).toEqual(v.ids);
    releaseAll(cache, x);
    releaseAll(cache, y);
    releaseAll(cache2, u);
    releaseAll(cache2, v);
    cache.clear();
    cache2.clear();
  });

  it('bad images give the clear errors and pin nothing (also after a good, cached image)', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const d = deps(cache);
    const good = await preparePrompt(d, turn1());
    const key = good.images[0].key;
    const withBad = (image: Blob | PixelData): MultimodalMessage[] => [{ role: 'user', content: [{ type: 'image', image: png }, { type: 'image', image }, { type: 'text', text: 'x' }] }];
    await expect(preparePrompt(d, withBad(new Blob([])))).rejects.toThrow(/image 2: the file is empty \(0 bytes\)/);
    await expect(preparePrompt(d, withBad(new Blob(['hello, not a png'], { type: 'image/png' })))).rejects.toThrow(/image 2: this file is not an image this page can read/);
    await expect(preparePrompt(d, withBad({ width: 8000, height: 5000, data: new Uint8ClampedArray(4) }))).rejects.toThrow(/image 2: the image is 8000 × 5000 = 40\.0 megapixels/);
    await expect(preparePrompt(d, withBad(await hugePng(4097, 4097)))).rejects.toThrow(/image 2: the image is 4097 × 4097 = 16\.8 megapixels/);
    await expect(preparePrompt(d, [{ role: 'user', content: [{ type: 'image', image: new Blob([]) }] }])).rejects.toThrow(/^the image: the file is empty/);
    await expect(preparePrompt(d, [{ role: 'user', content: [{ type: 'image', image: png }, { type: 'text', text: 'what is <image>?' }] }])).rejects.toThrow(/reserves it for images/);
    expect(cache.users(key)).toBe(1); // only `good`'s pin
    expect(cache.size).toBe(1);
    expect(d.encodes).toHaveLength(1);
    releaseAll(cache, good);
    cache.clear();
  });

  it('an encoder failure pins nothing and the next request retries', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const d = deps(cache);
    const failing = { ...d, encode: () => Promise.reject(new Error('encoder: out of memory')) };
    const msgs = (): MultimodalMessage[] => [{ role: 'user', content: [{ type: 'image', image: png }, { type: 'image', image: picture(50, 50, 7) }] }];
    await expect(preparePrompt(failing, msgs())).rejects.toThrow('encoder: out of memory');
    expect(cache.size).toBe(0);
    const p = await preparePrompt(d, msgs());
    expect(d.encodes).toHaveLength(2);
    expect(p.images.map((i) => cache.users(i.key))).toEqual([1, 1]);
    releaseAll(cache, p);
    cache.clear();
  });

  it('text-only messages: the plain template ids, no images', async () => {
    const cache = new ImageFeatureCache(gpu, 1 << 20);
    const p = await preparePrompt(deps(cache), [{ role: 'user', content: 'Hello.' }]);
    expect(p.images).toEqual([]);
    expect(p.ids).toEqual((await processor.prepare([{ role: 'user', content: 'Hello.' }])).ids);
  });
});

/** A valid 1-bit greyscale PNG of the given size (all black): small file, many pixels. */
async function hugePng(width: number, height: number): Promise<Blob> {
  const row = 1 + Math.ceil(width / 8);
  const raw = new Uint8Array(row * height); // filter byte 0 + zero bits per row
  const idat = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, no filter, no interlace
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array())];
  return new Blob(parts as Uint8Array<ArrayBuffer>[], { type: 'image/png' });
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
