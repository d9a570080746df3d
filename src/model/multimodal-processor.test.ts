/**
 * The per-image processor path (prepareImage + prompt) gives, id for id and
 * pixel for pixel, what the transformers.js processor's whole-prompt call
 * gives (the way prepare() worked before images were handled one by one), on
 * the tiny VLMs: Idefics3 with image splitting, LLaVA, and the trained
 * Idefics3 shapes model (no splitting) — one and two images, sizes and aspect
 * ratios that tile differently, system prompts, a multi-turn conversation.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { modelRef } from '../../test/models.ts';
import { decodeImage, ImageInputError, type PixelData } from './image-input.ts';
import { withPillowResize } from './image-resample.ts';
import { featureRuns, MultimodalProcessor, readImages, type MultimodalMessage } from './multimodal-processor.ts';
import { resolveSource, type ModelSource } from './source.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';
import { parseVisionConfig, type VisionSpec } from './vision-config.ts';
import { loadOrt } from './vision-encoder.ts';

interface HfTensor {
  data: ArrayLike<number | bigint | boolean>;
  dims: number[];
}
type HfProcessor = ((...args: unknown[]) => Promise<Record<string, unknown>>) & {
  apply_chat_template(messages: unknown[], opts: Record<string, unknown>): string;
  config: Record<string, unknown>;
};
interface RefImage {
  pixelValues: { data: Float32Array; dims: number[] };
  pixelAttentionMask?: { data: Uint8Array; dims: number[] };
  numFeatures: number;
}

// browsers: transformers.js resizes Idefics3 images with onnxruntime-web, whose wasm must come from here
beforeAll(async () => {
  await loadOrt();
});

const MODELS = [
  { model: 'tiny-vlm-idefics3', png: 'reference/image.png' },
  { model: 'tiny-vlm-llava', png: 'reference/image.png' },
  { model: 'tiny-vlm-shapes', png: 'testset/test_0000.png' },
];

/** A deterministic RGBA picture of the given size (gradients, so resizing has something to do). */
function picture(width: number, height: number, seed: number): PixelData {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      data.set([(x * 7 + seed * 31) & 255, (y * 5 + seed * 17) & 255, ((x ^ y) * 3 + seed) & 255, 255], o);
    }
  }
  return { width, height, data };
}

function sameF32(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

describe.each(MODELS)('$model: per-image processor = whole-prompt processor', ({ model, png }) => {
  let source: ModelSource;
  let tokenizer: Tokenizer;
  let spec: VisionSpec;
  let mp: MultimodalProcessor;
  let A: Blob;
  const B = picture(200, 90, 1); // wide: Idefics3 splits it 1 × 2
  const C = picture(70, 150, 2); // tall: 2 × 1
  const D = picture(40, 30, 3); // small: upscaled, then 2 × 2

  beforeAll(async () => {
    source = resolveSource(modelRef(model));
    spec = parseVisionConfig(JSON.parse(new TextDecoder().decode(await source.readFile('config.json'))) as Record<string, unknown>)!;
    tokenizer = await loadTokenizer(source);
    mp = await MultimodalProcessor.load(source, tokenizer, spec);
    A = new Blob([(await source.readFile(png)) as Uint8Array<ArrayBuffer>], { type: 'image/png' });
  });

  const img = (image: Blob | PixelData) => ({ type: 'image' as const, image });
  const text = (t: string) => ({ type: 'text' as const, text: t });
  const CONVERSATIONS: [string, () => MultimodalMessage[]][] = [
    ['one image', () => [{ role: 'user', content: [img(A), text('What is this?')] }]],
    ['system prompt, a wide image between texts', () => [
      { role: 'system', content: 'You answer in one word.' },
      { role: 'user', content: [text('Look: '), img(B), text(' \nwhat colour is it?')] },
    ]],
    ['two images of different shapes in one message', () => [{ role: 'user', content: [img(C), img(D), text('Which is taller?')] }]],
    ['a multi-turn conversation with an image in two turns', () => [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [img(A), text('What shape?')] },
      { role: 'assistant', content: 'A circle.' },
      { role: 'user', content: [text('And in this one?'), img(B)] },
      { role: 'assistant', content: [text('A square.')] },
      { role: 'user', content: 'Which one is bigger?' },
    ]],
    ['text only', () => [{ role: 'user', content: 'Hello there.' }]],
  ];

  it.each(CONVERSATIONS)('%s: same ids, runs, pixel tensors and masks', async (_, conversation) => {
    const messages = conversation();
    const want = await wholePrompt(mp, tokenizer, spec, messages);
    const got = await mp.prepare(messages);
    expect(got.ids).toEqual(want.ids);
    expect(got.images.map((i) => i.runs)).toEqual(featureRuns(want.ids, spec.imageTokenId, want.images.map((i) => i.numFeatures)));
    expect(got.images).toHaveLength(want.images.length);
    got.images.forEach((g, i) => {
      const w = want.images[i];
      expect(g.numFeatures).toBe(w.numFeatures);
      expect(g.expansion.filter((t) => t === spec.imageTokenId)).toHaveLength(g.numFeatures);
      expect(g.pixelValues.dims).toEqual(w.pixelValues.dims);
      expect(sameF32(g.pixelValues.data, w.pixelValues.data)).toBe(-1);
      expect(g.pixelAttentionMask?.dims).toEqual(w.pixelAttentionMask?.dims);
      if (w.pixelAttentionMask) expect(Array.from(g.pixelAttentionMask!.data)).toEqual(Array.from(w.pixelAttentionMask.data));
    });
    // the same prompt from known expansions alone (what a later turn does)
    const reads = await readImages(messages);
    const calls = mp.imageCalls;
    const known = reads.map((r) => mp.knownExpansion(mp.imageKey(r))!);
    expect(mp.prompt(messages, known).ids).toEqual(want.ids);
    expect(mp.imageCalls).toBe(calls);
  });

  it("system tokens: where the leading system messages end (a cache prefix until 'system'), 0 without one", async () => {
    const system = 'You describe pictures of shapes in one short sentence.';
    const withImage = await mp.prepare([{ role: 'system', content: system }, { role: 'user', content: [img(D), text('What is it?')] }]);
    const words = (ids: number[]) => tokenizer.decode(ids).replace(/\s+/g, ' ');
    expect(withImage.systemTokens).toBeGreaterThan(0);
    expect(words(withImage.ids.slice(0, withImage.systemTokens))).toContain(system);
    const rest = words(withImage.ids.slice(withImage.systemTokens));
    expect(rest).toContain('What is it?');
    expect(rest).not.toContain('shapes');
    expect(withImage.images[0].runs[0].start).toBeGreaterThanOrEqual(withImage.systemTokens);
    // two system messages, the second holding an image: its expansion counts inside the prefix
    const two = await mp.prepare([{ role: 'system', content: system }, { role: 'system', content: [text('Example: '), img(C)] }, { role: 'user', content: 'And now?' }]);
    const runs = two.images[0].runs;
    expect(two.systemTokens).toBeGreaterThanOrEqual(runs[runs.length - 1].start + runs[runs.length - 1].count);
    expect(words(two.ids.slice(two.systemTokens))).toContain('And now?');
    expect(words(two.ids.slice(two.systemTokens))).not.toContain('Example');
    expect((await mp.prepare([{ role: 'user', content: [img(D), text('Hi')] }])).systemTokens).toBe(0);
  });

  it('tiles as the config says (Idefics3 splitting: 2 × 2 + 1, 1 × 2 + 1, 2 × 1 + 1; the shapes model and LLaVA: 1)', async () => {
    const [a, b, c, d] = await Promise.all((await readImages([{ role: 'user', content: [img(A), img(B), img(C), img(D)] }])).map((r) => mp.prepareImage(r, 'x')));
    const tiles = (p: { pixelValues: { dims: number[] } }) => (spec.kind === 'llava' ? 1 : p.pixelValues.dims[1]);
    if (model === 'tiny-vlm-idefics3') expect([a, b, c, d].map(tiles)).toEqual([5, 3, 3, 5]); // 40 × 30 is resized to 128 × 96 first
    else expect([a, b, c, d].map(tiles)).toEqual([1, 1, 1, 1]);
  });

  it('keys: content + settings; the same pixels in another shape are another image', async () => {
    const [a1, a2, b, flat] = await readImages([{ role: 'user', content: [img(A), img(new Blob([await A.arrayBuffer()])), img(B), img({ width: 90, height: 200, data: B.data })] }]);
    expect(mp.imageKey(a1)).toBe(mp.imageKey(a2));
    expect(new Set([a1, b, flat].map((r) => mp.imageKey(r))).size).toBe(3);
    expect(mp.imageKey(a1)).toMatch(/^[0-9a-f]{64}:[0-9a-f]{8}$/);
  });

  it('refuses a text that holds the image token itself', async () => {
    const withImage: MultimodalMessage[] = [{ role: 'user', content: [img(D), text(`what is ${mp.placeholder}?`)] }];
    await expect(mp.prepare(withImage)).rejects.toThrow(ImageInputError);
    await expect(mp.prepare(withImage)).rejects.toThrow(/contains the image token "<image>" .*2 image placeholders for 1 image\).*remove it/);
    await expect(mp.prepare([{ role: 'user', content: 'say <image>' }])).rejects.toThrow(/reserves it for images/);
  });

  it('counts decodes and processor calls; prepare() does no caching, prepareImage fills the expansion LRU', async () => {
    const [r] = await readImages([{ role: 'user', content: [img(picture(33, 21, 9))] }]);
    expect(mp.knownExpansion(mp.imageKey(r))).toBeUndefined();
    const before = { decodes: mp.decodes, calls: mp.imageCalls };
    const p = await mp.prepareImage(r, 'the image');
    expect({ decodes: mp.decodes - before.decodes, calls: mp.imageCalls - before.calls }).toEqual({ decodes: 1, calls: 1 });
    expect(p.key).toBe(mp.imageKey(r));
    expect(mp.knownExpansion(p.key)).toEqual(p.expansion);
  });
});

// ---------------------------------------------------------------- the whole-prompt call (how prepare() worked before)

/**
 * Every image decoded, the chat template rendered, the transformers.js
 * processor called ONCE on the whole prompt and its batched pixel tensors
 * split per image. One exception: transformers.js' LlavaProcessor expands
 * only the FIRST "<image>" of a text (String.replace), so for LLaVA with
 * several images the reference expands every placeholder as Python's
 * LlavaProcessor does (the old whole-prompt path failed there).
 */
async function wholePrompt(mp: MultimodalProcessor, tokenizer: Tokenizer, spec: VisionSpec, messages: MultimodalMessage[]): Promise<{ ids: number[]; images: RefImage[] }> {
  const hf = mp.hf as HfProcessor;
  const reads = await readImages(messages);
  // the engine resizes with its Pillow port; so does the reference call (the splicing is what is checked)
  const images = await Promise.all(reads.map(async (r, i) => withPillowResize(await decodeImage(r, `image ${i + 1}`))));
  const templated = messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content.map((p) => (p.type === 'text' ? { type: 'text', text: p.text } : { type: 'image' })),
  }));
  const text = hf.apply_chat_template(templated, { add_generation_prompt: true });
  if (!images.length) return { ids: tokenizer.encode(text), images: [] };
  const out = await (spec.kind === 'idefics3' ? hf(text, images) : hf(images, text));
  let ids = Array.from((out.input_ids as HfTensor).data, Number);
  if (spec.kind === 'llava') {
    const perImage = ids.filter((t) => t === spec.imageTokenId).length - (images.length - 1);
    if (images.length > 1) ids = tokenizer.encode(text.split(mp.placeholder).join(mp.placeholder.repeat(perImage)));
    return { ids, images: splitLlava(out, images.length, perImage) };
  }
  return { ids, images: splitIdefics3(out, images.length, Number(hf.config.image_seq_len)) };
}

function splitLlava(out: Record<string, unknown>, n: number, perImage: number): RefImage[] {
  const pv = out.pixel_values as HfTensor;
  const data = pv.data as Float32Array;
  const [, c, h, w] = pv.dims;
  const per = c * h * w;
  return Array.from({ length: n }, (_, i) => ({ pixelValues: { data: data.slice(i * per, (i + 1) * per), dims: [1, c, h, w] }, numFeatures: perImage }));
}

/** [1, tiles, 3, H, W]: image i has rows*cols tiles + its global image (1 tile unsplit). */
function splitIdefics3(out: Record<string, unknown>, n: number, seqLen: number): RefImage[] {
  const pv = out.pixel_values as HfTensor;
  const data = pv.data as Float32Array;
  const [, , c, h, w] = pv.dims;
  const rows = ((out.rows as number[][] | undefined)?.[0] ?? []).map(Number);
  const cols = ((out.cols as number[][] | undefined)?.[0] ?? []).map(Number);
  const mask = out.pixel_attention_mask as HfTensor | undefined;
  let tile = 0;
  return Array.from({ length: n }, (_, i) => {
    const tiles = (rows[i] ?? 0) * (cols[i] ?? 0) + 1;
    const per = c * h * w;
    const img: RefImage = { pixelValues: { data: data.slice(tile * per, (tile + tiles) * per), dims: [1, tiles, c, h, w] }, numFeatures: tiles * seqLen };
    if (mask) img.pixelAttentionMask = { data: Uint8Array.from(Array.from(mask.data).slice(tile * h * w, (tile + tiles) * h * w), Number), dims: [1, tiles, h, w] };
    tile += tiles;
    return img;
  });
}

describe('the old whole-prompt LLaVA call', () => {
  it('expands only the first of two images (why the reference above expands each)', async () => {
    const source = resolveSource(modelRef('tiny-vlm-llava'));
    const spec = parseVisionConfig(JSON.parse(new TextDecoder().decode(await source.readFile('config.json'))) as Record<string, unknown>)!;
    const mp = await MultimodalProcessor.load(source, await loadTokenizer(source), spec);
    const hf = mp.hf as HfProcessor;
    const reads = await readImages([{ role: 'user', content: [{ type: 'image', image: picture(8, 8, 1) }, { type: 'image', image: picture(9, 9, 2) }] }]);
    const images = await Promise.all(reads.map((r) => decodeImage(r, 'x')));
    const out = await hf(images, '<image>\n<image>\n');
    expect(Array.from((out.input_ids as HfTensor).data, Number).filter((t) => t === spec.imageTokenId)).toHaveLength(16 + 1);
  });
});
