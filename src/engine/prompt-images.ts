/**
 * preparePrompt: chat messages with images → prompt ids + pinned image
 * features, doing per image only what is not known yet. Every turn of a chat
 * resends the whole conversation; its earlier images then cost a read and a
 * SHA-256, nothing more:
 *
 *   read + hash every image (no decode)                       image-input.readImage
 *   per image, key = hash + processor settings:
 *     expansion known (processor LRU) and features cached     → pin, done
 *     expansion known, features evicted or being encoded      → acquire: joins a
 *                                                               running encode, or
 *                                                               decodes + encodes
 *     new image                                               → decode + preprocess,
 *                                                               acquire (encode)
 *   prompt: chat template, placeholder k → expansion k, feature runs
 *
 * The engine's input stage calls it; it knows no Engine. Features stay pinned
 * (one ImageFeatureCache user per image) until the caller releases each key:
 *
 *   const { ids, images } = await preparePrompt(
 *     { processor, features: imageCache, encode: (img) => turns.run(() => vision.encode(img)) },
 *     messages.map(toMultimodal));
 *   // … submit; when the request ends: for (const img of images) imageCache.release(img.key)
 */
import type { MultimodalMessage, MultimodalProcessor, PreparedImage } from '../model/multimodal-processor.ts';
import { imageLabel, readImages } from '../model/multimodal-processor.ts';
import type { ReadImage } from '../model/image-input.ts';
import type { PromptImage } from '../scheduler/request.ts';
import type { ImageFeatureCache } from './image-features.ts';

export interface ImagePromptDeps {
  processor: MultimodalProcessor;
  features: ImageFeatureCache;
  /** Runs the vision encoder on one image: a new buffer f32 [numFeatures, hidden] the cache takes over. */
  encode(img: PreparedImage): Promise<GPUBuffer>;
  /**
   * How many leading tokens of the prompt have their KV cached (any tier,
   * staging stored pages first); an image wholly inside them is not encoded.
   */
  cachedTokens?(prompt: ImagePrompt): Promise<number>;
  /** Expansions kept across sessions (beside the stored KV): one found there spares the decode. */
  expansions?: { get(key: string): Promise<readonly number[] | null>; put(key: string, ids: readonly number[]): void } | null;
}

/** A prompt with images: what preparePrompt gives (the engine's PreparedPrompt). */
export interface ImagePrompt {
  ids: number[];
  images: PromptImage[];
  /** Set by cachedTokens when the stored tier staged part of the prefix. */
  restoredTokens?: number;
  systemTokens?: number;
}

/**
 * The prompt of `messages` and its images: ids, and per image (in prompt
 * order) its key, the runs of positions its feature rows fill, and the
 * features, pinned in `deps.features` once per image — release each
 * `images[i].key` when the request ends. On any error (a bad image:
 * ImageInputError, an encoder failure) nothing stays pinned. Concurrent calls
 * with the same new image share one encoder run.
 */
export async function preparePrompt(deps: ImagePromptDeps, messages: MultimodalMessage[]): Promise<ImagePrompt> {
  const reads = await readImages(messages);
  const pinned: string[] = [];
  try {
    const got = [];
    for (const [i, read] of reads.entries()) {
      const img = await describeImage(deps, read, imageLabel(i, reads.length));
      if (img.features) pinned.push(img.key);
      got.push(img);
    }
    const { ids, runs, systemTokens } = deps.processor.prompt(messages, got.map((g) => g.expansion));
    const images: PromptImage[] = got.map((g, i) => ({ key: g.key, runs: runs[i], features: g.features, encode: g.encode }));
    const prompt: ImagePrompt = { ids, images, ...(systemTokens ? { systemTokens } : {}) }; // cachedTokens may note what it restored on it
    const cached = images.some((img) => !img.features) && deps.cachedTokens ? await deps.cachedTokens(prompt) : 0;
    for (const img of images) {
      if (img.features || img.runs.every((r) => r.start + r.count <= cached)) continue; // cached KV: no encoder run now
      img.features = await img.encode!();
      pinned.push(img.key);
    }
    return prompt;
  } catch (e) {
    for (const key of pinned) deps.features.release(key);
    throw e;
  }
}

/**
 * One image's key, expansion and — when cached — pinned features; `encode`
 * pins them otherwise (decoding first if that was not needed for the expansion).
 */
async function describeImage(deps: ImagePromptDeps, read: ReadImage, label: string): Promise<{ key: string; expansion: readonly number[]; features: GPUBuffer | null; encode: () => Promise<GPUBuffer> }> {
  const { processor, features } = deps;
  const key = processor.imageKey(read);
  const known = processor.knownExpansion(key) ?? (await deps.expansions?.get(key)) ?? undefined;
  // decode now when the expansion is needed; else only if the encoder must run
  let img = known ? null : await processor.prepareImage(read, label);
  if (img) deps.expansions?.put(key, img.expansion);
  const encode = () => features.acquire(key, async () => deps.encode((img ??= await decodeAgreeing(processor, read, label, known!))));
  return { key, expansion: known ?? img!.expansion, features: features.tryAcquire(key), encode };
}

/** Decodes an image whose prompt was built from a known expansion: the processor must give the same one (else the prompt would not match its features). */
async function decodeAgreeing(processor: MultimodalProcessor, read: ReadImage, label: string, known: readonly number[]): Promise<PreparedImage> {
  const img = await processor.prepareImage(read, label);
  if (img.expansion.length !== known.length || img.expansion.some((t, i) => t !== known[i])) {
    throw new Error(`${label}: its stored prompt expansion disagrees with what the processor gives now: clear the stored caches (engine.cache.clear()) and ask again`);
  }
  return img;
}
