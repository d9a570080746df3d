/**
 * The generated tiny VLMs (scripts/make_tiny_vlms.py): their ONNX vision encoders run in
 * onnxruntime-web (wasm backend, Node) and reproduce PyTorch's image_features on the stored
 * reference pixel_values within 1e-4 abs; tensor names / shapes are the ones the runtime expects;
 * config.json parses with our config parser; transformers.js' processors load the folders and
 * turn reference/image.png into the reference pixel_values and the expected image-token count;
 * the manifest matches the files.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AutoProcessor, RawImage, env as hfEnv } from '@huggingface/transformers';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from './config.ts';

const TOL = 1e-4;
const IMAGE_TOKEN_ID = 49190;

beforeAll(() => {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = pathToFileURL(resolve('node_modules/onnxruntime-web/dist')).href + '/';
});

function f32(path: string): Float32Array {
  const b = readFileSync(path);
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function json(dir: string, file: string): Record<string, any> {
  return JSON.parse(readFileSync(resolve(dir, file), 'utf8')) as Record<string, any>;
}

async function session(dir: string): Promise<ort.InferenceSession> {
  const bytes = readFileSync(resolve(dir, 'onnx/vision_encoder.onnx'));
  return ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'] });
}

async function processor(name: string) {
  hfEnv.allowRemoteModels = false;
  hfEnv.localModelPath = resolve('public/models') + '/';
  return AutoProcessor.from_pretrained(name);
}

const ASK = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is this?' }] }];

function checkManifest(dir: string): void {
  const lines = readFileSync(resolve(dir, 'manifest.sha256'), 'utf8').trim().split('\n');
  expect(lines.length).toBeGreaterThan(10);
  for (const line of lines) {
    const [hash, rel] = line.split('  ');
    expect(createHash('sha256').update(readFileSync(resolve(dir, rel!))).digest('hex'), rel).toBe(hash);
  }
}

describe('tiny-vlm-idefics3', () => {
  const dir = resolve('public/models/tiny-vlm-idefics3');
  const meta = json(dir, 'reference/meta.json');
  let sess: ort.InferenceSession;
  beforeAll(async () => {
    sess = await session(dir);
  });

  it('ONNX names: pixel_values + pixel_attention_mask -> image_features', () => {
    expect([...sess.inputNames]).toEqual(['pixel_values', 'pixel_attention_mask']);
    expect([...sess.outputNames]).toEqual(['image_features']);
  });

  it('image_features match torch within 1e-4 (1 x 5 tiles), and batch 2 gives the same rows', async () => {
    const shape = meta.pixel_values_shape as number[];
    expect(shape).toEqual([1, 5, 3, 64, 64]);
    const px = f32(resolve(dir, 'reference/pixel_values.f32'));
    const n = shape[1]!;
    const mask = new Uint8Array(n * 64 * 64).fill(1);
    const out = await sess.run({
      pixel_values: new ort.Tensor('float32', px, shape),
      pixel_attention_mask: new ort.Tensor('bool', mask, [1, n, 64, 64]),
    });
    const feats = out.image_features!;
    expect(feats.dims).toEqual([5, 16, 32]);
    expect(meta.image_features_shape).toEqual([5, 16, 32]);
    const ref = f32(resolve(dir, 'reference/image_features.f32'));
    expect(maxAbsDiff(feats.data as Float32Array, ref)).toBeLessThan(TOL);

    // dynamic batch_size / num_images: [2, 3, ...] built from tiles 0..5 of the reference
    const tile = 3 * 64 * 64;
    const px2 = new Float32Array(6 * tile);
    for (let i = 0; i < 6; i++) px2.set(px.subarray((i % 5) * tile, (i % 5 + 1) * tile), i * tile);
    const out2 = await sess.run({
      pixel_values: new ort.Tensor('float32', px2, [2, 3, 3, 64, 64]),
      pixel_attention_mask: new ort.Tensor('bool', new Uint8Array(6 * 64 * 64).fill(1), [2, 3, 64, 64]),
    });
    const f2 = out2.image_features!;
    expect(f2.dims).toEqual([6, 16, 32]);
    const row = 16 * 32;
    for (let i = 0; i < 6; i++) {
      const j = i % 5;
      expect(maxAbsDiff((f2.data as Float32Array).subarray(i * row, (i + 1) * row), ref.subarray(j * row, (j + 1) * row))).toBeLessThan(TOL);
    }
  });

  it('config.json: Idefics3 form, parses as a Llama text decoder', () => {
    const c = json(dir, 'config.json');
    expect(c).toMatchObject({
      fastcache_random_weights: true, model_type: 'idefics3', image_token_id: IMAGE_TOKEN_ID, scale_factor: 2, tie_word_embeddings: true,
      text_config: { model_type: 'llama', hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 49280 },
      vision_config: { image_size: 64, patch_size: 8, hidden_size: 24 },
    });
    expect(parseConfig(c)).toMatchObject({
      architecture: 'llama', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, vocabSize: 49280, tieWordEmbeddings: true, attentionBias: false,
    });
    expect(json(dir, 'preprocessor_config.json')).toMatchObject({ do_image_splitting: true, max_image_size: { longest_edge: 64 }, size: { longest_edge: 128 } });
    expect(json(dir, 'processor_config.json')).toMatchObject({ image_seq_len: 16, processor_class: 'Idefics3Processor' });
  });

  it('transformers.js Idefics3Processor: 2x2 tiles + global = 5 images, 80 image tokens, pixel_values = reference', async () => {
    const p = await processor('tiny-vlm-idefics3');
    const text = p.apply_chat_template(ASK, { add_generation_prompt: true }) as string;
    expect(text).toBe('<|im_start|>User:<image>What is this?<end_of_utterance>\nAssistant:');
    const inp = await p(text, [await RawImage.read(resolve(dir, 'reference/image.png'))]);
    expect(inp.pixel_values.dims).toEqual([1, 5, 3, 64, 64]);
    expect(inp.pixel_attention_mask.dims).toEqual([1, 5, 64, 64]);
    const ids = Array.from(inp.input_ids.data as BigInt64Array, Number);
    expect(ids.filter((t) => t === IMAGE_TOKEN_ID).length).toBe(5 * 16);
    expect(maxAbsDiff(inp.pixel_values.data as Float32Array, f32(resolve(dir, 'reference/pixel_values.f32')))).toBeLessThan(1e-5);
  });

  it('manifest.sha256 matches the files', () => checkManifest(dir));
});

describe('tiny-vlm-llava', () => {
  const dir = resolve('public/models/tiny-vlm-llava');
  const meta = json(dir, 'reference/meta.json');
  let sess: ort.InferenceSession;
  beforeAll(async () => {
    sess = await session(dir);
  });

  it('ONNX names: pixel_values -> image_features', () => {
    expect([...sess.inputNames]).toEqual(['pixel_values']);
    expect([...sess.outputNames]).toEqual(['image_features']);
  });

  it('image_features (unprojected) match torch within 1e-4, batch 1 and batch 2', async () => {
    expect(meta.pixel_values_shape).toEqual([1, 3, 32, 32]);
    const px = f32(resolve(dir, 'reference/pixel_values.f32'));
    const ref = f32(resolve(dir, 'reference/image_features.f32'));
    const out = await sess.run({ pixel_values: new ort.Tensor('float32', px, [1, 3, 32, 32]) });
    expect(out.image_features!.dims).toEqual([1, 16, 48]);
    expect(maxAbsDiff(out.image_features!.data as Float32Array, ref)).toBeLessThan(TOL);

    const px2 = new Float32Array(2 * px.length);
    px2.set(px, 0);
    px2.set(px, px.length);
    const out2 = await sess.run({ pixel_values: new ort.Tensor('float32', px2, [2, 3, 32, 32]) });
    expect(out2.image_features!.dims).toEqual([2, 16, 48]);
    const d = out2.image_features!.data as Float32Array;
    expect(maxAbsDiff(d.subarray(0, ref.length), ref)).toBeLessThan(TOL);
    expect(maxAbsDiff(d.subarray(ref.length), ref)).toBeLessThan(TOL);
  });

  it('config.json: LLaVA form with a Qwen2 text_config, parses as Qwen2 (q/k/v bias, untied)', () => {
    const c = json(dir, 'config.json');
    expect(c).toMatchObject({
      fastcache_random_weights: true, model_type: 'llava', architectures: ['LlavaForConditionalGeneration'], image_token_index: IMAGE_TOKEN_ID,
      projector_hidden_act: 'gelu', vision_feature_layer: -1, vision_feature_select_strategy: 'full',
      text_config: { model_type: 'qwen2', hidden_size: 32, vocab_size: 49280 },
      vision_config: { model_type: 'siglip_vision_model', image_size: 32, patch_size: 8, hidden_size: 48 },
    });
    expect(parseConfig(c)).toMatchObject({
      architecture: 'qwen2', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, vocabSize: 49280, tieWordEmbeddings: false, attentionBias: true,
    });
    expect(json(dir, 'processor_config.json')).toMatchObject({ processor_class: 'LlavaProcessor', image_token: '<image>', patch_size: 8, num_additional_image_tokens: 0 });
    expect(json(dir, 'preprocessor_config.json')).toMatchObject({ image_processor_type: 'CLIPImageProcessor', crop_size: { height: 32, width: 32 } });
  });

  it('transformers.js LlavaProcessor: LLaVA chat template, 16 image tokens, pixel_values = reference', async () => {
    const p = await processor('tiny-vlm-llava');
    const text = p.apply_chat_template(ASK, { add_generation_prompt: true }) as string;
    expect(text).toBe('<|im_start|>USER: <image>\nWhat is this? ASSISTANT:');
    const inp = await p(await RawImage.read(resolve(dir, 'reference/image.png')), text);
    expect(inp.pixel_values.dims).toEqual([1, 3, 32, 32]);
    const ids = Array.from(inp.input_ids.data as BigInt64Array, Number);
    expect(ids.filter((t) => t === IMAGE_TOKEN_ID).length).toBe(16);
    expect(maxAbsDiff(inp.pixel_values.data as Float32Array, f32(resolve(dir, 'reference/pixel_values.f32')))).toBeLessThan(1e-5);
  });

  it('manifest.sha256 matches the files', () => checkManifest(dir));
});
