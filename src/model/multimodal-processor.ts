/**
 * Chat messages with images → the decoder's prompt ids (image tokens
 * expanded exactly as the model's transformers.js processor does) and, per
 * image, its pixel tensors and the prompt positions its features fill.
 * Built from the model's own preprocessor_config.json / processor_config.json
 * and chat template, read through the ModelSource — transformers.js fetches
 * nothing itself.
 *
 * Work is per image, not per prompt, so a known image costs nothing:
 *
 *   readImage (image-input)   bytes/pixels + SHA-256, no decoding
 *   imageKey(read)            hash + processor settings (equal keys ⇒ equal features)
 *   knownExpansion(key)       the image's expansion if this processor made it before (LRU)
 *   prepareImage(read)        decode + the processor on that one image, text = "<image>":
 *                             pixel tensors, numFeatures, expansion (counted: decodes)
 *   prompt(messages, exps)    chat template with one "<image>" per image → ids, the k-th
 *                             image token replaced by expansion k; feature runs per image
 *
 *   template ids   … User : <image> What …           (<image> is one added token)
 *   expansion k    <fake> <global-img> <image>×16 <fake>   (Idefics3; LLaVA: <image>×N)
 *   prompt ids     … User : <fake> <global-img> <image>×16 <fake> What …
 *
 * Every token of an expansion is produced from the placeholder alone and it
 * begins and ends with added tokens, so splicing at the token level gives the
 * ids of the processor's whole-prompt call (multimodal-processor.test.ts
 * proves it on the tiny VLMs).
 */
import type { ModelSource } from './source.ts';
import type { Tokenizer } from './tokenizer.ts';
import type { VisionSpec } from './vision-config.ts';
import { parseJsonObject } from './model-json.ts';
import { systemPrefixLength } from './system-prefix.ts';
import { RESAMPLE_VERSION, withPillowResize } from './image-resample.ts';
import { decodeImage, ImageInputError, readImage, type ImageSource, type ReadImage } from './image-input.ts';

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

/** One image through the processor: what the vision encoder takes and what the prompt gets. */
export interface PreparedImage {
  /** Content hash + the processor's settings: equal keys ⇒ equal features. */
  key: string;
  pixelValues: PixelTensor;
  /** Idefics3: the per-pixel mask the encoder takes (bool as bytes). */
  pixelAttentionMask?: { data: Uint8Array; dims: number[] };
  /** Feature rows this image yields (its image tokens in the prompt). */
  numFeatures: number;
  /** The token ids that replace this image's placeholder; numFeatures of them are image tokens. */
  expansion: readonly number[];
}

export interface MultimodalPrompt {
  ids: number[];
  images: (PreparedImage & { runs: FeatureRun[] })[];
  /** Leading tokens of the system message(s), 0 without (see system-prefix.ts). */
  systemTokens: number;
}

/** Known expansions kept per processor (a few KB each at most). */
export const EXPANSION_CACHE_SIZE = 512;

interface HfTensor {
  data: ArrayLike<number | bigint | boolean>;
  dims: number[];
}

type HfProcessor = ((...args: unknown[]) => Promise<Record<string, unknown>>) & {
  apply_chat_template(messages: unknown[], opts: Record<string, unknown>): string;
  config: Json;
};

type Json = Record<string, unknown>;

export class MultimodalProcessor {
  /** Images decoded (prepareImage calls). */
  decodes = 0;
  /** Calls of the transformers.js processor on an image. */
  imageCalls = 0;
  /** key → expansion, least recently used first. */
  private readonly expansions = new Map<string, readonly number[]>();

  private constructor(
    private readonly spec: VisionSpec,
    private readonly tokenizer: Tokenizer,
    private readonly processor: HfProcessor,
    private readonly settingsHash: string,
    /** The image token's text ("<image>"): what the chat template writes per image. */
    readonly placeholder: string,
    /** What the tokenizer adds around any text (e.g. BOS), stripped from a one-image call's ids. */
    private readonly added: { before: number[]; after: number[] },
  ) {}

  static async load(source: ModelSource, tokenizer: Tokenizer, spec: VisionSpec): Promise<MultimodalProcessor> {
    const where = `model ${source.id}`;
    const readJson = async (f: string): Promise<Json> => ((await source.has(f)) ? parseJsonObject(await source.readFile(f), f, where) : {});
    const [pre, proc] = await Promise.all([readJson('preprocessor_config.json'), readJson('processor_config.json')]);
    if (!Object.keys(pre).length) throw new Error(`model ${source.id}: a vision model needs preprocessor_config.json`);
    const hf = (await import('@huggingface/transformers')) as unknown as Record<string, unknown>;
    // Not String(): an object with its own "toString" key (JSON can hold one) would throw a TypeError.
    const key = typeof pre.image_processor_type === 'string' ? pre.image_processor_type.replace(/Fast$/, '') : '';
    const ImageProcessorClass = (typeof hf[key] === 'function' ? hf[key] : hf.ImageProcessor) as new (c: Json) => unknown;
    const ProcessorClass = hf[spec.kind === 'idefics3' ? 'Idefics3Processor' : 'LlavaProcessor'] as new (c: Json, parts: Json, template: unknown) => HfProcessor;
    let processor: HfProcessor;
    try {
      processor = new ProcessorClass(proc, { image_processor: new ImageProcessorClass(pre), tokenizer: tokenizer.hf }, null);
    } catch (e) {
      throw new Error(`${where}: cannot build the image processor from preprocessor_config.json and processor_config.json: ${(e as Error).message}`);
    }
    const token: unknown = spec.kind === 'idefics3' ? (processor as unknown as { image_token: unknown }).image_token : (processor.config.image_token ?? '<image>');
    // Not String(token): an object from the JSON (with its own "toString" key, say) would throw a TypeError here.
    if (typeof token !== 'string' || token === '') {
      throw new Error(`${where}: processor_config.json's image_token must be a non-empty string such as "<image>", got ${JSON.stringify(token)}`);
    }
    const placeholder = token;
    const bare = tokenizer.encode(placeholder, { addSpecialTokens: false });
    if (bare.length !== 1 || bare[0] !== spec.imageTokenId) {
      const from = spec.kind === 'llava' ? " (processor_config.json's image_token)" : '';
      throw new Error(`model ${source.id}: the image token "${placeholder}"${from} tokenizes to [${bare.join(', ')}], not to the config's image token id ${spec.imageTokenId}`);
    }
    const full = tokenizer.encode(placeholder);
    const at = full.indexOf(spec.imageTokenId);
    const added = { before: full.slice(0, at), after: full.slice(at + 1) };
    return new MultimodalProcessor(spec, tokenizer, processor, hashString(JSON.stringify([source.id, pre, proc, RESAMPLE_VERSION])), placeholder, added);
  }

  /** The transformers.js processor itself (tests compare against its whole-prompt call). */
  get hf(): unknown {
    return this.processor;
  }

  /** The cache key of a read image: its content hash + this processor's settings. */
  imageKey(read: ReadImage): string {
    return `${read.hash}:${this.settingsHash}`;
  }

  /** The expansion of an image this processor prepared before (marks it recently used), or undefined. */
  knownExpansion(key: string): readonly number[] | undefined {
    const e = this.expansions.get(key);
    if (e) this.remember(key, e);
    return e;
  }

  /** Decodes one image (clear errors for bad ones) and runs the processor on it alone. */
  async prepareImage(read: ReadImage, label: string): Promise<PreparedImage> {
    this.decodes++;
    // Pillow's resize, not transformers.js's (sharp in Node, a canvas in browsers): the same pixels everywhere
    const image = await withPillowResize(await decodeImage(read, label));
    this.imageCalls++;
    const text = this.placeholder;
    const out = await (this.spec.kind === 'idefics3' ? this.processor(text, [image]) : this.processor([image], text));
    const key = this.imageKey(read);
    const expansion = this.expansionOf(Array.from((out.input_ids as HfTensor).data, Number));
    const pixels = this.pixelsOf(out, expansion);
    this.remember(key, expansion);
    return { key, ...pixels, expansion };
  }

  /**
   * The prompt of `messages` whose k-th image expands to `expansions[k]`:
   * ids, and per image the runs of positions its feature rows fill. Refuses a
   * text that itself holds the image token (the counts would disagree).
   */
  prompt(messages: MultimodalMessage[], expansions: readonly (readonly number[])[]): { ids: number[]; runs: FeatureRun[][]; systemTokens: number } {
    const { text, images } = this.render(messages, true);
    if (images.length !== expansions.length) throw new Error(`prompt: ${images.length} images but ${expansions.length} expansions`);
    const template = this.tokenizer.encode(text);
    const slots: number[] = [];
    template.forEach((t, i) => t === this.spec.imageTokenId && slots.push(i));
    if (slots.length !== images.length) {
      const counts = `${slots.length} image placeholders for ${images.length} image${images.length === 1 ? '' : 's'}`;
      throw new ImageInputError(
        slots.length > images.length
          ? `the message text contains the image token "${this.placeholder}" (the prompt has ${counts}); the model reserves it for images — remove it from the text`
          : `the chat template rendered ${counts}; is the chat template the model's?`,
      );
    }
    const ids: number[] = [];
    let from = 0;
    slots.forEach((slot, k) => {
      for (let i = from; i < slot; i++) ids.push(template[i]);
      for (const t of expansions[k]) ids.push(t);
      from = slot + 1;
    });
    for (let i = from; i < template.length; i++) ids.push(template[i]);
    const counts = expansions.map((e) => e.reduce((n, t) => n + Number(t === this.spec.imageTokenId), 0));
    return { ids, runs: featureRuns(ids, this.spec.imageTokenId, counts), systemTokens: this.systemTokens(template, slots, expansions, messages) };
  }

  /**
   * Prompt tokens of the leading system message(s) (0 without one): the
   * template's ids for them alone when they are a prefix of the whole
   * template's, each image placeholder inside counted as its expansion.
   */
  private systemTokens(template: readonly number[], slots: readonly number[], expansions: readonly (readonly number[])[], messages: MultimodalMessage[]): number {
    const end = systemPrefixLength(template, messages, (sys) => this.tokenizer.encode(this.render(sys, false).text));
    return end + slots.reduce((n, slot, k) => n + (slot < end ? expansions[k].length - 1 : 0), 0);
  }

  /** Every image read, decoded and preprocessed, then the prompt: no caching (preparePrompt in src/engine/prompt-images.ts skips known images). */
  async prepare(messages: MultimodalMessage[]): Promise<MultimodalPrompt> {
    const reads = await readImages(messages);
    const prepared = await Promise.all(reads.map((r, i) => this.prepareImage(r, imageLabel(i, reads.length))));
    const { ids, runs, systemTokens } = this.prompt(messages, prepared.map((p) => p.expansion));
    return { ids, images: prepared.map((p, i) => ({ ...p, runs: runs[i] })), systemTokens };
  }

  // ---------------------------------------------------------------- helpers

  /** The chat template's text with one placeholder per image, and the images in order. */
  private render(messages: MultimodalMessage[], generationPrompt: boolean): { text: string; images: ImageSource[] } {
    const images: ImageSource[] = [];
    const templated = messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content.map((p) => {
        if (p.type === 'text') return { type: 'text', text: p.text };
        images.push(p.image);
        return { type: 'image' };
      }),
    }));
    return { text: this.processor.apply_chat_template(templated, { add_generation_prompt: generationPrompt }), images };
  }

  /** A one-image call's ids minus what the tokenizer adds around any text. */
  private expansionOf(ids: number[]): number[] {
    const { before, after } = this.added;
    const ok = before.every((t, i) => ids[i] === t) && after.every((t, i) => ids[ids.length - after.length + i] === t);
    if (!ok || ids.length < before.length + after.length) throw new Error(`the processor's ids for one image do not start with [${before.join(', ')}] and end with [${after.join(', ')}]`);
    return ids.slice(before.length, ids.length - after.length);
  }

  /** The one image's pixel tensors and feature count from a one-image processor call. */
  private pixelsOf(out: Record<string, unknown>, expansion: readonly number[]): Pick<PreparedImage, 'pixelValues' | 'pixelAttentionMask' | 'numFeatures'> {
    const pv = out.pixel_values as HfTensor;
    const data = pv.data as Float32Array;
    const tokens = expansion.reduce((n, t) => n + Number(t === this.spec.imageTokenId), 0);
    let img: Pick<PreparedImage, 'pixelValues' | 'pixelAttentionMask' | 'numFeatures'>;
    if (this.spec.kind === 'llava') {
      img = { pixelValues: { data, dims: [1, ...pv.dims.slice(1)] }, numFeatures: tokens };
    } else {
      // idefics3: [1, tiles, 3, H, W]: rows*cols tiles + the global image (1 tile unsplit)
      const rows = Number((out.rows as number[][] | undefined)?.[0]?.[0] ?? 0);
      const cols = Number((out.cols as number[][] | undefined)?.[0]?.[0] ?? 0);
      const tiles = rows * cols + 1;
      if (pv.dims[1] !== tiles) throw new Error(`the image processor gave ${pv.dims[1]} tiles for a ${rows} × ${cols} split (+1 global)`);
      img = { pixelValues: { data, dims: [...pv.dims] }, numFeatures: tiles * Number(this.processor.config.image_seq_len) };
      const mask = out.pixel_attention_mask as HfTensor | undefined;
      if (mask) img.pixelAttentionMask = { data: Uint8Array.from(mask.data as ArrayLike<number>, Number), dims: [...mask.dims] };
    }
    if (tokens !== img.numFeatures) throw new Error(`the processor expanded an image to ${tokens} image tokens but its pixels give ${img.numFeatures} features`);
    return img;
  }

  private remember(key: string, expansion: readonly number[]): void {
    this.expansions.delete(key);
    this.expansions.set(key, expansion);
    if (this.expansions.size > EXPANSION_CACHE_SIZE) this.expansions.delete(this.expansions.keys().next().value!);
  }
}

/** Reads and hashes every image of `messages`, in order (no decoding). */
export function readImages(messages: MultimodalMessage[]): Promise<ReadImage[]> {
  const sources = messages.flatMap((m) => (typeof m.content === 'string' ? [] : m.content.flatMap((p) => (p.type === 'image' ? [p.image] : []))));
  return Promise.all(sources.map((s, i) => readImage(s, imageLabel(i, sources.length))));
}

/** How errors name image i of n: "the image", or "image 2". */
export function imageLabel(i: number, n: number): string {
  return n > 1 ? `image ${i + 1}` : 'the image';
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
