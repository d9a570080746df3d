/**
 * Chat messages with images → the decoder's prompt ids (image tokens
 * expanded exactly as the model's transformers.js processor does) and, per
 * image, its pixel tensors and the prompt positions its features fill.
 * Built from the model's own preprocessor_config.json / processor_config.json
 * and chat template, read through the ModelSource — transformers.js fetches
 * nothing itself.
 */
import type { ModelSource } from './source.ts';
import type { Tokenizer } from './tokenizer.ts';
import type { VisionSpec } from './vision-config.ts';
import { decodeImage, ImageInputError, type ImageSource } from './image-input.ts';

/** A message whose content may mix text and images (the engine's public ChatMessage, resolved). */
export interface MultimodalMessage {
  role: string;
  content: string | ({ type: 'text'; text: string } | { type: 'image'; image: ImageSource })[];
}

/** Consecutive image-token positions [start, start+count) filled by feature rows [featureRow, …). */
export interface FeatureRun {
  start: number;
  count: number;
  featureRow: number;
}

export interface PixelTensor {
  data: Float32Array;
  dims: number[];
}

export interface PreparedImage {
  /** Content hash + the processor's settings: equal keys ⇒ equal features. */
  key: string;
  pixelValues: PixelTensor;
  /** Idefics3: the per-pixel mask the encoder takes (bool as bytes). */
  pixelAttentionMask?: { data: Uint8Array; dims: number[] };
  /** Feature rows this image yields (its image tokens in the prompt). */
  numFeatures: number;
  runs: FeatureRun[];
}

export interface MultimodalPrompt {
  ids: number[];
  images: PreparedImage[];
}

interface HfTensor {
  data: ArrayLike<number | bigint | boolean>;
  dims: number[];
}

type HfProcessor = ((...args: unknown[]) => Promise<Record<string, unknown>>) & {
  apply_chat_template(messages: unknown[], opts: Record<string, unknown>): string;
};

type Json = Record<string, unknown>;

export class MultimodalProcessor {
  private constructor(
    private readonly spec: VisionSpec,
    private readonly tokenizer: Tokenizer,
    private readonly processor: HfProcessor,
    private readonly settingsKey: string,
  ) {}

  static async load(source: ModelSource, tokenizer: Tokenizer, spec: VisionSpec): Promise<MultimodalProcessor> {
    const readJson = async (f: string): Promise<Json> => ((await source.has(f)) ? (JSON.parse(new TextDecoder().decode(await source.readFile(f))) as Json) : {});
    const [pre, proc] = await Promise.all([readJson('preprocessor_config.json'), readJson('processor_config.json')]);
    if (!Object.keys(pre).length) throw new Error(`model ${source.id}: a vision model needs preprocessor_config.json`);
    const hf = (await import('@huggingface/transformers')) as unknown as Record<string, unknown>;
    const key = String(pre.image_processor_type ?? '').replace(/Fast$/, '');
    const ImageProcessorClass = (typeof hf[key] === 'function' ? hf[key] : hf.ImageProcessor) as new (c: Json) => unknown;
    const ProcessorClass = hf[spec.kind === 'idefics3' ? 'Idefics3Processor' : 'LlavaProcessor'] as new (c: Json, parts: Json, template: unknown) => HfProcessor;
    const processor = new ProcessorClass(proc, { image_processor: new ImageProcessorClass(pre), tokenizer: tokenizer.hf }, null);
    return new MultimodalProcessor(spec, tokenizer, processor, JSON.stringify([source.id, pre, proc]));
  }

  /** Decodes every image (clear errors for bad ones), renders the template, expands and tokenizes. */
  async prepare(messages: MultimodalMessage[]): Promise<MultimodalPrompt> {
    const sources: ImageSource[] = [];
    const templated = messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content.map((p) => {
        if (p.type === 'text') return { type: 'text', text: p.text };
        sources.push(p.image);
        return { type: 'image' };
      }),
    }));
    const decoded = await Promise.all(sources.map((s, i) => decodeImage(s, sources.length > 1 ? `image ${i + 1}` : 'the image')));
    const text = this.processor.apply_chat_template(templated, { add_generation_prompt: true });
    const images = decoded.map((d) => d.image);
    if (!images.length) return { ids: this.tokenizer.encode(text), images: [] };
    const out = await (this.spec.kind === 'idefics3' ? this.processor(text, images) : this.processor(images, text));
    const ids = Array.from((out.input_ids as HfTensor).data, Number);
    const perImage = this.splitPixels(out, images.length);
    const runs = featureRuns(ids, this.spec.imageTokenId, perImage.map((p) => p.numFeatures));
    return {
      ids,
      images: perImage.map((p, i) => ({ ...p, key: `${decoded[i].hash}:${hashString(this.settingsKey)}`, runs: runs[i] })),
    };
  }

  /** The processor's batched pixel tensors → one tensor per image, with its feature count. */
  private splitPixels(out: Record<string, unknown>, n: number): Omit<PreparedImage, 'key' | 'runs'>[] {
    const pv = out.pixel_values as HfTensor;
    const data = pv.data as Float32Array;
    if (this.spec.kind === 'llava') {
      const [, c, h, w] = pv.dims;
      const per = c * h * w;
      const tokens = (out.input_ids as HfTensor).data;
      let count = 0;
      for (const t of Array.from(tokens, Number)) if (t === this.spec.imageTokenId) count++;
      return Array.from({ length: n }, (_, i) => ({ pixelValues: { data: data.slice(i * per, (i + 1) * per), dims: [1, c, h, w] }, numFeatures: count / n }));
    }
    // idefics3: [1, tiles, 3, H, W]; image i has rows*cols tiles + its global image (1 tile unsplit)
    const [, , c, h, w] = pv.dims;
    const rows = ((out.rows as number[][] | undefined)?.[0] ?? []).map(Number);
    const cols = ((out.cols as number[][] | undefined)?.[0] ?? []).map(Number);
    const mask = out.pixel_attention_mask as HfTensor | undefined;
    const seqLen = Number((this.processor as unknown as { config: Json }).config.image_seq_len);
    let tile = 0;
    return Array.from({ length: n }, (_, i) => {
      const tiles = (rows[i] ?? 0) * (cols[i] ?? 0) + 1;
      const per = c * h * w;
      const img: Omit<PreparedImage, 'key' | 'runs'> = {
        pixelValues: { data: data.slice(tile * per, (tile + tiles) * per), dims: [1, tiles, c, h, w] },
        numFeatures: tiles * seqLen,
      };
      if (mask) img.pixelAttentionMask = { data: Uint8Array.from(Array.from(mask.data).slice(tile * h * w, (tile + tiles) * h * w), Number), dims: [1, tiles, h, w] };
      tile += tiles;
      return img;
    });
  }
}

/** Splits the prompt's image-token positions, in order, among images of the given feature counts. */
export function featureRuns(ids: readonly number[], imageTokenId: number, counts: readonly number[]): FeatureRun[][] {
  const positions: number[] = [];
  ids.forEach((t, i) => t === imageTokenId && positions.push(i));
  const total = counts.reduce((a, b) => a + b, 0);
  if (positions.length !== total) {
    throw new ImageInputError(`the prompt has ${positions.length} image tokens but its images give ${total} features; is the chat template the model's?`);
  }
  let k = 0;
  return counts.map((count) => {
    const runs: FeatureRun[] = [];
    for (let f = 0; f < count; f++, k++) {
      const last = runs[runs.length - 1];
      if (last && last.start + last.count === positions[k]) last.count++;
      else runs.push({ start: positions[k], count: 1, featureRow: f });
    }
    return runs;
  });
}

/** A short stable hash of a string (FNV-1a, 32 bits, hex): for cache keys, not security. */
export function hashString(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}
