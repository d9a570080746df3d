/**
 * Property-based fuzzing of the model's other JSON files (fast-check): generation_config.json,
 * model.safetensors.index.json, tokenizer.json, tokenizer_config.json, chat_template.json,
 * preprocessor_config.json and processor_config.json replaced by random bytes, non-JSON text,
 * JSON that is not an object, or objects of random fields. loadModel / MultimodalProcessor.load
 * then succeed, or fail with a plain Error that names the file — never a TypeError or a
 * SyntaxError that leaves the user guessing which file is broken.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/model-files.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fuzzParams, rejected } from '../../test/fuzz.ts';
import { parseConfig } from './config.ts';
import { INDEX_FILE, loadModel } from './loader.ts';
import { MultimodalProcessor } from './multimodal-processor.ts';
import { serializeSafetensors, type TensorToWrite } from './safetensors.ts';
import type { ModelSource } from './source.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';
import { parseVisionConfig, type VisionSpec } from './vision-config.ts';
import { expectedTensorShapes, numel } from './weights-cpu.ts';

const enc = new TextEncoder();

/** A one-layer model small enough that a full load per case is cheap: sharded in two. */
const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 8, hidden_size: 4, intermediate_size: 4,
  num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: true,
};

function memorySource(files: Map<string, Uint8Array>): ModelSource {
  return {
    id: 'fuzz',
    readFile: async (f) => {
      const b = files.get(f);
      if (!b) throw new Error(`model file "${f}" not found`);
      return b;
    },
    has: async (f) => files.has(f),
  };
}

/** A file's replacement: bytes that are not UTF-8 JSON, text that is not JSON, JSON that is no object, or an object of random fields. */
function contentArb(keys: readonly string[]): fc.Arbitrary<Uint8Array> {
  const notJson = fc.string({ maxLength: 16 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  });
  const fieldValue = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom(null, 5, -1, 'x', [], {}, [1, 'a'], { type: 'BPE' }, { toString: 1 }, { type: 'WordLevel', vocab: { a: 0 } }, { type: 'constructor' }, '{{ bad jinja', 'constructor'),
  );
  return fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    notJson.map((s) => enc.encode(s)),
    fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v) => enc.encode(JSON.stringify(v))),
    fc.array(fc.tuple(fc.constantFrom(...keys, '__proto__', 'constructor'), fieldValue), { maxLength: 4 }).map((pairs) => enc.encode(`{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`)),
  );
}

let text: Map<string, Uint8Array>;
let vlms: { name: string; files: Map<string, Uint8Array>; tokenizer: Tokenizer; spec: VisionSpec }[];

beforeAll(async () => {
  // The text model: tiny-qwen2-sharded's tokenizer files with the one-layer weights above.
  const tokDir = resolve('public/models/tiny-qwen2-sharded');
  const tensors: TensorToWrite[] = [...expectedTensorShapes(parseConfig(CONFIG))].map(([name, shape]) => ({ name, dtype: 'F32', shape, data: new Uint8Array(numel(shape) * 4) }));
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const shardName = (i: number) => `model-0000${i + 1}-of-00002.safetensors`;
  text = new Map<string, Uint8Array>([
    ['config.json', enc.encode(JSON.stringify(CONFIG))],
    ['generation_config.json', enc.encode(JSON.stringify({ eos_token_id: 2 }))],
    [INDEX_FILE, enc.encode(JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(shards.flatMap((s, i) => s.map((t) => [t.name, shardName(i)]))) }))],
    ...shards.map((s, i): [string, Uint8Array] => [shardName(i), serializeSafetensors(s)]),
  ]);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) text.set(f, new Uint8Array(await readFile(join(tokDir, f))));
  // The chat template moves to chat_template.json so that file is read too.
  const tc = JSON.parse(new TextDecoder().decode(text.get('tokenizer_config.json'))) as Record<string, unknown>;
  text.set('chat_template.json', enc.encode(JSON.stringify({ chat_template: tc.chat_template })));
  delete tc.chat_template;
  text.set('tokenizer_config.json', enc.encode(JSON.stringify(tc)));
  expect((await loadModel(memorySource(text))).tokenizer.hasChatTemplate).toBe(true);

  vlms = [];
  for (const name of ['tiny-vlm-llava', 'tiny-vlm-idefics3']) {
    const dir = resolve('public/models', name);
    const files = new Map<string, Uint8Array>();
    for (const f of await readdir(dir)) if (f.endsWith('.json')) files.set(f, new Uint8Array(await readFile(join(dir, f))));
    const source = memorySource(files);
    const spec = parseVisionConfig(JSON.parse(new TextDecoder().decode(files.get('config.json'))) as Record<string, unknown>)!;
    vlms.push({ name, files, tokenizer: await loadTokenizer(source), spec });
  }
});

/** A plain Error that names `file` (or nothing thrown). */
function expectNamed(err: Error | null, file: string): void {
  if (err) {
    expect(err.message).toMatch(/^model fuzz: /);
    expect(err.message).toContain(file);
  }
}

const TEXT_FILES: Record<string, readonly string[]> = {
  'generation_config.json': ['eos_token_id', 'bos_token_id', 'max_new_tokens'],
  [INDEX_FILE]: ['weight_map', 'metadata'],
  'tokenizer.json': ['model', 'normalizer', 'pre_tokenizer', 'decoder', 'added_tokens', 'post_processor', 'version'],
  'tokenizer_config.json': ['chat_template', 'tokenizer_class', 'bos_token', 'eos_token', 'added_tokens_decoder', 'model_max_length', 'clean_up_tokenization_spaces'],
  'chat_template.json': ['chat_template'],
};

describe('model files fuzz: loadModel', () => {
  it('a damaged generation config, shard index, tokenizer.json, tokenizer_config.json or chat_template.json: loads, or an Error naming the file', async () => {
    const damage = fc.constantFrom(...Object.keys(TEXT_FILES)).chain((file) => fc.tuple(fc.constant(file), contentArb(TEXT_FILES[file])));
    await fc.assert(
      fc.asyncProperty(damage, async ([file, bytes]) => {
        const files = new Map(text);
        files.set(file, bytes);
        expectNamed(await rejected(() => loadModel(memorySource(files))), file);
      }),
      fuzzParams(),
    );
  });
});

describe('model files fuzz: MultimodalProcessor.load', () => {
  it('a damaged preprocessor_config.json or processor_config.json (LLaVA, Idefics3): a processor, or an Error naming the file', async () => {
    const pre = ['image_processor_type', 'size', 'crop_size', 'do_resize', 'do_center_crop', 'image_mean', 'image_std', 'rescale_factor', 'resample', 'do_image_splitting', 'max_image_size'];
    const proc = ['image_token', 'patch_size', 'image_seq_len', 'vision_feature_select_strategy', 'num_additional_image_tokens', 'processor_class'];
    const damage = fc.tuple(
      fc.nat(1),
      fc.oneof(fc.tuple(fc.constant('preprocessor_config.json'), contentArb(pre)), fc.tuple(fc.constant('processor_config.json'), contentArb(proc))),
      fc.boolean(),
    );
    await fc.assert(
      fc.asyncProperty(damage, async ([m, [file, bytes], merge]) => {
        const vlm = vlms[m];
        const files = new Map(vlm.files);
        // Half the time the random fields go on top of the real ones (deeper into the processor's own checks).
        const real = JSON.parse(new TextDecoder().decode(vlm.files.get(file))) as Record<string, unknown>;
        let random: unknown = null;
        try {
          random = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          // not JSON: used as is
        }
        const mergeable = merge && typeof random === 'object' && random !== null && !Array.isArray(random);
        files.set(file, mergeable ? enc.encode(JSON.stringify({ ...real, ...(random as object) })) : bytes);
        const err = await rejected(() => MultimodalProcessor.load(memorySource(files), vlm.tokenizer, vlm.spec));
        // An image token that tokenizes wrong is named by what it is (and, for LLaVA, where it came from).
        if (err && /the image token ".*" tokenizes to/s.test(err.message)) {
          if (vlm.spec.kind === 'llava') expect(err.message).toContain("processor_config.json's image_token");
          return;
        }
        expectNamed(err, file);
      }),
      fuzzParams(),
    );
  });
});
