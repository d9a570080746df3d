/**
 * loadModel: a Hugging Face model folder (through a ModelSource) → config, validated weights
 * in CPU memory, tokenizer and generation config.
 *
 * Reads config.json, generation_config.json (optional), the tokenizer files, and either
 * model.safetensors or model.safetensors.index.json + its shards. Every tensor the config
 * requires must be present with the right shape and a float dtype; extra tensors are ignored.
 * VLM checkpoints whose text decoder lives under another prefix (model.text_model.*,
 * model.language_model.*, language_model.model.*) are read under the canonical names.
 */
import { parseConfig, type ModelConfig } from './config.ts';
import { parseVisionConfig, type VisionSpec } from './vision-config.ts';
import { parseSafetensors, tensorToF16Bits, tensorToF32, type ParsedSafetensors, type TensorInfo } from './safetensors.ts';
import { unsafeFilePath, type FileProgress, type ModelSource } from './source.ts';
import { parseJsonObject } from './model-json.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';
import { LM_HEAD, expectedTensorShapes, type CpuTensor } from './weights-cpu.ts';
import { flushF16Subnormals } from '../gpu/f16.ts';

export interface LoadedModel {
  /** eosTokenIds: generation_config.json's, then config.json's (tokenizer.eosTokenIds adds its eos_token first). */
  config: ModelConfig;
  /** Canonical HF names (model.embed_tokens.weight, model.layers.{i}..., lm_head.weight). */
  weights: Map<string, CpuTensor>;
  tokenizer: Tokenizer;
  generationConfig: Record<string, unknown>;
  source: ModelSource;
  /** The image path of a VLM (idefics3 / llava), null for a text model. */
  vision: VisionSpec | null;
  /** config.json says the weights are random (a generated test model). */
  randomWeights: boolean;
}

export interface LoadOptions {
  /**
   * 'f32': every tensor as f32. 'f16': every tensor as f16 bits (F32/BF16 rounded to nearest even,
   * subnormals flushed to zero as the GPU's f16 weights are: src/gpu/f16.ts flushF16Subnormals).
   * 'auto' (default): F16 tensors stay f16, F32 and BF16 become f32.
   */
  weightDtype?: 'f32' | 'f16' | 'auto';
  onProgress?: (p: FileProgress) => void;
}

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Prefixes under which checkpoints store the text decoder; `model.` is the plain causal LM. */
const TEXT_PREFIXES = ['model.', 'model.text_model.', 'model.language_model.', 'language_model.model.'];
const LM_HEAD_NAMES = [LM_HEAD, 'language_model.lm_head.weight', 'model.lm_head.weight'];

export async function loadModel(source: ModelSource, opts: LoadOptions = {}): Promise<LoadedModel> {
  const where = `model ${source.id}`;
  const readJson = async (file: string) => parseJsonObject(await source.readFile(file, opts.onProgress), file, where);

  let config: ModelConfig;
  let vision: VisionSpec | null;
  const configJson = await readJson('config.json');
  try {
    config = parseConfig(configJson);
    vision = parseVisionConfig(configJson);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
  const generationConfig = (await source.has('generation_config.json')) ? await readJson('generation_config.json') : {};
  config.eosTokenIds = mergeEos(generationConfig.eos_token_id, config.eosTokenIds);
  const tokenizer = await loadTokenizer(source, { eosTokenIds: config.eosTokenIds });
  const extra = vision?.kind === 'llava' ? projectorShapes(vision, config) : new Map<string, number[]>();
  const weights = await loadWeights(source, config, extra, opts, where, readJson);
  return { config, weights, tokenizer, generationConfig, source, vision, randomWeights: configJson.fastcache_random_weights === true };
}

/** LLaVA's multi_modal_projector (linear_1 → act → linear_2), under its canonical names. */
export function projectorShapes(vision: VisionSpec, config: ModelConfig): Map<string, number[]> {
  const h = config.hiddenSize;
  return new Map([
    ['multi_modal_projector.linear_1.weight', [h, vision.visionHidden]],
    ['multi_modal_projector.linear_1.bias', [h]],
    ['multi_modal_projector.linear_2.weight', [h, h]],
    ['multi_modal_projector.linear_2.bias', [h]],
  ]);
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

async function loadWeights(
  source: ModelSource,
  config: ModelConfig,
  extra: Map<string, number[]>,
  opts: LoadOptions,
  where: string,
  readJson: (file: string) => Promise<Record<string, unknown>>,
): Promise<Map<string, CpuTensor>> {
  const expected = new Map([...expectedTensorShapes(config), ...extra]);
  let files: string[];
  let prefix: string | null = null;
  if (await source.has(INDEX_FILE)) {
    // Sharded: check the index before downloading anything, and read only the shards needed.
    const index = parseIndex(await readJson(INDEX_FILE), where);
    prefix = choosePrefix(new Set(index.keys()));
    const missing = [...expected.keys()].filter((name) => !candidates(name, prefix!).some((n) => index.has(n)));
    if (missing.length) throw missingError(where, missing, expected, ` (${INDEX_FILE} lists no such tensor)`);
    files = [...new Set([...expected.keys()].map((name) => index.get(candidates(name, prefix!).find((n) => index.has(n))!)!))].sort();
  } else if (await source.has(SINGLE_FILE)) {
    files = [SINGLE_FILE];
  } else {
    throw new Error(`${where}: no weights found (looked for ${SINGLE_FILE} and ${INDEX_FILE})`);
  }

  const weights = new Map<string, CpuTensor>();
  const skipped = new Map<string, string>(); // checkpoint name → unsupported dtype
  for (const file of files) {
    const bytes = await source.readFile(file, opts.onProgress);
    let parsed: ParsedSafetensors;
    try {
      parsed = parseSafetensors(bytes, { skipUnsupported: true });
    } catch (e) {
      throw new Error(`${where}: ${file}: ${(e as Error).message}`);
    }
    prefix ??= choosePrefix(new Set([...parsed.tensors.keys(), ...parsed.skipped.keys()]));
    for (const [name, dtype] of parsed.skipped) skipped.set(name, dtype);
    for (const [name, shape] of expected) {
      if (weights.has(name)) continue;
      const info = candidates(name, prefix).map((n) => parsed.tensors.get(n)).find((t) => t !== undefined);
      if (!info) continue;
      if (info.shape.join() !== shape.join()) {
        throw new Error(`${where}: tensor "${info.name}" in ${file} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
      weights.set(name, convert(bytes, info, parsed.dataOffset, opts.weightDtype ?? 'auto'));
    }
  }

  const missing = [...expected.keys()].filter((name) => !weights.has(name));
  for (const name of missing) {
    const bad = candidates(name, prefix!).find((n) => skipped.has(n));
    if (bad) throw new Error(`${where}: tensor "${bad}" has dtype ${skipped.get(bad)}, expected F32, F16 or BF16`);
  }
  if (missing.length) throw missingError(where, missing, expected, '');
  return weights;
}

function missingError(where: string, missing: string[], expected: Map<string, number[]>, why: string): Error {
  const list = missing.map((n) => `"${n}" [${expected.get(n)!.join(', ')}]`);
  const shown = list.slice(0, 5).join(', ') + (list.length > 5 ? ` and ${list.length - 5} more` : '');
  return new Error(`${where}: missing tensor${list.length > 1 ? 's' : ''} ${shown}${why}`);
}

function convert(bytes: Uint8Array, info: TensorInfo, dataOffset: number, want: 'f32' | 'f16' | 'auto'): CpuTensor {
  const f16 = want === 'f16' || (want === 'auto' && info.dtype === 'F16');
  return f16
    ? { dtype: 'f16', shape: info.shape, data: flushF16Subnormals(tensorToF16Bits(bytes, info, dataOffset)) }
    : { dtype: 'f32', shape: info.shape, data: tensorToF32(bytes, info, dataOffset) };
}

/** The names a canonical tensor may have in the checkpoint, given its text prefix. */
function candidates(name: string, prefix: string): string[] {
  if (name === LM_HEAD) return LM_HEAD_NAMES;
  if (!name.startsWith('model.')) return [name, 'model.' + name]; // a VLM's own parts (projector)
  return [prefix + name.slice('model.'.length)];
}

/** The text prefix whose embed_tokens the checkpoint holds; "model." when none does. */
function choosePrefix(names: Set<string>): string {
  return TEXT_PREFIXES.find((p) => names.has(p + 'embed_tokens.weight')) ?? 'model.';
}

/**
 * The index's tensor → shard map. Shard names are untrusted paths: each must be a .safetensors
 * file inside the model's folder, so that no source is asked for a file outside it.
 */
function parseIndex(json: Record<string, unknown>, where: string): Map<string, string> {
  const map = json.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error(`${where}: ${INDEX_FILE} has no "weight_map" object`);
  }
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(map)) {
    const unsafe = typeof file !== 'string' ? 'is not a string' : unsafeFilePath(file) ?? (file.endsWith('.safetensors') ? null : 'does not end in .safetensors');
    if (unsafe) {
      throw new Error(
        `${where}: ${INDEX_FILE} weight_map["${name}"] = ${JSON.stringify(file)} ${unsafe}; ` +
          'a shard must be a .safetensors file named relative to the model folder (like "model-00001-of-00002.safetensors")',
      );
    }
    out.set(name, file as string);
  }
  return out;
}

/** generation_config's EOS ids first (what HF generate stops on), then config.json's. */
function mergeEos(fromGeneration: unknown, fromConfig: number[]): number[] {
  const gen = fromGeneration == null ? [] : Array.isArray(fromGeneration) ? fromGeneration : [fromGeneration];
  const ids = gen.filter((x): x is number => Number.isInteger(x) && (x as number) >= 0);
  return [...new Set([...ids, ...fromConfig])];
}
