/**
 * Images end to end on the generated tiny VLMs (Idefics3 with image
 * splitting, LLaVA with a Qwen2 decoder): the processor + vision encoder give
 * PyTorch's features for the reference image, the engine's greedy tokens
 * equal the reference forward pass fed the same features, and asking again
 * about the same image neither re-encodes it nor re-prefills its pages.
 * Node runs the encoder on onnxruntime-web's wasm backend; Chromium on WebGPU
 * sharing the engine's device.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { loadCpuModel, modelRef } from '../../test/models.ts';
import { Engine } from './engine.ts';
import { ReferenceModel } from '../model/reference.ts';
import { resolveSource } from '../model/source.ts';
import { readF32 } from '../gpu/buffers.ts';
import type { Gpu } from '../gpu/context.ts';
import type { ChatMessage } from './types.ts';
import type { PixelData } from '../model/image-input.ts';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await testGpu();
});

async function file(model: string, path: string): Promise<Uint8Array> {
  return resolveSource(modelRef(model)).readFile(path);
}

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice().buffer);
}

function ask(image: Blob | PixelData, question: string): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text: question }] }];
}

const CASES = [
  { model: 'tiny-vlm-idefics3', features: 'reference/image_features.f32', imageTokens: 5 * 16 },
  { model: 'tiny-vlm-llava', features: 'reference/projected_features.f32', imageTokens: 16 },
];

describe.each(CASES)('$model', ({ model, features, imageTokens }) => {
  let engine: Engine;
  let image: Blob;
  let cpu: Awaited<ReturnType<typeof loadCpuModel>>;
  beforeAll(async () => {
    // Chromium runs the encoder on ORT's WebGPU EP on the engine's own device ('auto' picks wasm on SwiftShader)
    const vision = { backend: typeof window === 'undefined' ? ('wasm' as const) : ('webgpu' as const) };
    engine = await Engine.load(gpu, modelRef(model), { kvPages: 64, pageSize: 8, vision });
    cpu = await loadCpuModel(model);
    image = new Blob([(await file(model, 'reference/image.png')) as Uint8Array<ArrayBuffer>], { type: 'image/png' });
  });
  afterAll(() => engine.destroy());

  it('features of the reference image equal PyTorch’s (processor + encoder [+ projector])', async () => {
    const p = await engine.prepare(ask(image, 'What is this?'));
    expect(p.ids.filter((t) => t === cpu.vision!.imageTokenId)).toHaveLength(imageTokens);
    expect(p.images).toHaveLength(1);
    expect((await engine.info()).visionBackend).toBe(typeof window === 'undefined' ? 'wasm' : 'webgpu');
    const got = await readF32(gpu, p.images[0].features!, 0, imageTokens * engine.config.hiddenSize);
    const want = f32(await file(model, features));
    expect(got.length).toBe(want.length);
    let md = 0;
    for (let i = 0; i < want.length; i++) md = Math.max(md, Math.abs(got[i] - want[i]));
    expect(md).toBeLessThan(2e-4);
    engine.release(p);
  });

  it('greedy tokens equal the reference forward pass fed the same image features', async () => {
    const p = await engine.prepare(ask(image, 'Describe the picture.'));
    const feats = await readF32(gpu, p.images[0].features!, 0, imageTokens * engine.config.hiddenSize);
    const D = engine.config.hiddenSize;
    const embeds: (Float32Array | null)[] = p.ids.map(() => null);
    for (const run of p.images[0].runs) {
      for (let i = 0; i < run.count; i++) embeds[run.start + i] = feats.slice((run.featureRow + i) * D, (run.featureRow + i + 1) * D);
    }
    const ref = new ReferenceModel(engine.config, cpu.weights).greedy(p.ids, 16, [], embeds);
    const r = await engine.generate(p, { maxTokens: 16, ignoreEos: true });
    expect(r.tokens).toEqual(ref);
  });

  it('a second question about the same image: no encoder run, its pages come from the prefix cache, same answer', async () => {
    const before = engine.snapshot();
    const first = await engine.generate(ask(image, 'What colour is it?'), { maxTokens: 8, ignoreEos: true });
    const mid = engine.snapshot();
    const again = await engine.generate(ask(image, 'What colour is it?'), { maxTokens: 8, ignoreEos: true });
    const after = engine.snapshot();
    expect(mid.vision.encoderCalls).toBe(before.vision.encoderCalls); // encoded by the earlier tests
    expect(after.vision.encoderCalls).toBe(before.vision.encoderCalls);
    expect(after.prefixCache.hitTokens - mid.prefixCache.hitTokens).toBeGreaterThanOrEqual(imageTokens - 8);
    expect(again.tokens).toEqual(first.tokens);
    expect(engine.snapshot().pool.pagesInUse).toBe(0);
  });

  it('a second turn of a conversation about the same image decodes no image and runs no encoder (counted)', async () => {
    const turn1 = ask(new Blob([await image.arrayBuffer()], { type: 'image/png' }), 'What is this?');
    const first = await engine.generate(turn1, { maxTokens: 4, ignoreEos: true });
    const before = engine.snapshot();
    const turn2: ChatMessage[] = [...turn1, { role: 'assistant', content: first.text }, { role: 'user', content: 'And its colour?' }];
    const second = await engine.generate(turn2, { maxTokens: 4, ignoreEos: true });
    const after = engine.snapshot();
    expect(after.vision.imagesDecoded).toBe(before.vision.imagesDecoded);
    expect(after.vision.encoderCalls).toBe(before.vision.encoderCalls);
    expect(after.prefixCache.hitTokens - before.prefixCache.hitTokens).toBeGreaterThanOrEqual(imageTokens - 8);
    expect(second.tokens).toHaveLength(4);
    expect(after.pool.pagesInUse).toBe(0);
  });

  it('a different image is encoded, and does not hit the first image’s pages', async () => {
    const calls = engine.snapshot().vision.encoderCalls;
    const other = await flipped(image);
    const hits = engine.snapshot().prefixCache.hitTokens;
    await engine.generate(ask(other, 'What colour is it?'), { maxTokens: 2, ignoreEos: true });
    expect(engine.snapshot().vision.encoderCalls).toBe(calls + 1);
    // only the text before the image may be shared
    expect(engine.snapshot().prefixCache.hitTokens - hits).toBeLessThan(16);
  });

  it('bad images are refused with a clear message, and the engine keeps working', async () => {
    await expect(engine.prepare(ask(new Blob([]), 'x'))).rejects.toThrow(/empty \(0 bytes\)/);
    await expect(engine.prepare(ask(new Blob(['hello, not a png'], { type: 'image/png' }), 'x'))).rejects.toThrow(/not an image this page can read/);
    const big = { width: 8000, height: 5000, data: new Uint8ClampedArray(4) };
    await expect(engine.prepare([{ role: 'user', content: [{ type: 'image', image: big }, { type: 'text', text: 'x' }] }])).rejects.toThrow(/megapixels/);
    const r = await engine.generate(ask(image, 'ok?'), { maxTokens: 2, ignoreEos: true });
    expect(r.tokens).toHaveLength(2);
  });
});

/** The same image with its pixel rows reversed, through a PixelData input. */
async function flipped(png: Blob): Promise<{ width: number; height: number; data: Uint8ClampedArray }> {
  const { RawImage } = await import('@huggingface/transformers');
  const img = (await RawImage.fromBlob(png)).rgba();
  const row = img.width * 4;
  const data = new Uint8ClampedArray(img.data.length);
  for (let y = 0; y < img.height; y++) data.set(img.data.subarray(y * row, (y + 1) * row), (img.height - 1 - y) * row);
  return { width: img.width, height: img.height, data };
}

describe('a text model', () => {
  it('refuses images with a message naming the model', async () => {
    const engine = await Engine.load(gpu, modelRef('stories260K'), { kvPages: 16 });
    try {
      await expect(engine.prepare([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }])).rejects.toThrow(/takes no images/);
    } finally {
      await engine.destroy();
    }
  });
});
