/**
 * Generate the tiny test models in public/models/ (Hugging Face layout, random weights),
 * deterministically from fixed seeds: running it twice gives identical bytes.
 *
 *   npx tsx scripts/make-tiny-models.ts [outDir=public/models]
 *
 * Each model folder gets config.json, generation_config.json, tokenizer.json (stories260K's
 * 512-token sentencepiece-style vocabulary, copied), tokenizer_config.json (with a plain-text
 * chat template), README.md, and model.safetensors — or model.safetensors.index.json + shards —
 * and reference_greedy.json: the f32 ReferenceModel's greedy continuation of GOLDEN_PROMPT.
 *
 * Weight scales keep logits well spread (std ≈ 3-4) so greedy tokens depend on the prompt and
 * argmax margins are large enough for a GPU engine to match the reference token for token.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseConfig } from '../src/model/config.ts';
import { loadModel } from '../src/model/loader.ts';
import { ReferenceModel } from '../src/model/reference.ts';
import { serializeSafetensors, type TensorDtype, type TensorToWrite } from '../src/model/safetensors.ts';
import { localFolderSource } from '../src/model/source.ts';
import { expectedTensorShapes, f32ArrayToBf16, f32ArrayToF16, numel } from '../src/model/weights-cpu.ts';

export interface TinyModelSpec {
  name: string;
  seed: number;
  /** dtype of the weights in the file. */
  dtype: TensorDtype;
  /** Number of safetensors shards; 1 = a single model.safetensors. */
  shards: number;
  config: Record<string, unknown>;
}

/** A plain-text chat template the 512-token vocabulary tokenizes compactly. */
export const TINY_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

const llama3Scaling = { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 128 };

const qwen2Config = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 512, hidden_size: 64, intermediate_size: 160,
  num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 2048,
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, hidden_act: 'silu', tie_word_embeddings: true,
  use_sliding_window: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16',
};

export const TINY_MODELS: TinyModelSpec[] = [
  {
    // GQA 4:1, head_dim 8, untied head, F16, llama3 RoPE scaling (all three frequency bands in use).
    name: 'tiny-llama-gqa', seed: 1001, dtype: 'F16', shards: 1,
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 512, hidden_size: 64, intermediate_size: 128,
      num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 1024,
      rms_norm_eps: 1e-5, rope_theta: 10000.0, rope_scaling: llama3Scaling, hidden_act: 'silu', tie_word_embeddings: false,
      attention_bias: false, mlp_bias: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float16',
    },
  },
  {
    // head_dim 32, GQA 2:1, Llama with attention_bias, untied head, F16, llama3 RoPE scaling.
    name: 'tiny-llama-hd32', seed: 1002, dtype: 'F16', shards: 1,
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 512, hidden_size: 128, intermediate_size: 256,
      num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 1024,
      rms_norm_eps: 1e-5, rope_theta: 10000.0, rope_scaling: llama3Scaling, hidden_act: 'silu', tie_word_embeddings: false,
      attention_bias: true, mlp_bias: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float16',
    },
  },
  {
    // A long context (16k positions, plain RoPE, tied head): the strategies benchmark tries a > 4k-token prompt on it.
    name: 'tiny-llama-16k', seed: 1003, dtype: 'F16', shards: 1,
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 512, hidden_size: 64, intermediate_size: 128,
      num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 16384,
      rms_norm_eps: 1e-5, rope_theta: 500000.0, hidden_act: 'silu', tie_word_embeddings: true,
      attention_bias: false, mlp_bias: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float16',
    },
  },
  // Qwen2: q/k/v biases, tied embeddings, BF16, rope_theta 1e6. The sharded copy holds the same weights.
  { name: 'tiny-qwen2', seed: 2001, dtype: 'BF16', shards: 1, config: qwen2Config },
  { name: 'tiny-qwen2-sharded', seed: 2001, dtype: 'BF16', shards: 2, config: qwen2Config },
];

/** All files of one model folder: name → bytes. */
export function buildTinyModel(spec: TinyModelSpec, tokenizerJson: Uint8Array, stories: Record<string, unknown>): Map<string, Uint8Array> {
  const config = parseConfig(spec.config);
  const rand = normal(spec.seed);
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const values = initTensor(name, shape, rand);
    const bits = spec.dtype === 'F32' ? values : spec.dtype === 'F16' ? f32ArrayToF16(values) : f32ArrayToBf16(values);
    tensors.push({ name, dtype: spec.dtype, shape, data: new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength) });
  }
  const files = new Map<string, Uint8Array>();
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + '\n');
  files.set('config.json', json(spec.config));
  files.set('generation_config.json', json({ bos_token_id: 1, eos_token_id: 2, do_sample: false }));
  files.set('tokenizer.json', tokenizerJson);
  files.set('tokenizer_config.json', json({ ...stories, tokenizer_class: 'LlamaTokenizer', chat_template: TINY_CHAT_TEMPLATE }));
  files.set('README.md', new TextEncoder().encode(readme(spec)));
  if (spec.shards === 1) {
    files.set('model.safetensors', serializeSafetensors(tensors));
  } else {
    const shards = splitShards(tensors, spec.shards);
    const weightMap: Record<string, string> = {};
    let total = 0;
    shards.forEach((group, i) => {
      const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(spec.shards).padStart(5, '0')}.safetensors`;
      files.set(file, serializeSafetensors(group));
      for (const t of group) {
        weightMap[t.name] = file;
        total += t.data.length;
      }
    });
    const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
    files.set('model.safetensors.index.json', json({ metadata: { total_size: total }, weight_map: sortedMap }));
  }
  return files;
}

/** Prompt of each tiny model's reference_greedy.json (encoded with BOS), and its length in new tokens. */
export const GOLDEN_PROMPT = 'Once upon a time';
export const GOLDEN_NEW_TOKENS = 32;

/** Write every tiny model under outDir; the tokenizer comes from stories260K under tokenizerDir. */
export async function makeTinyModels(outDir: string, tokenizerDir = resolve('public/models/stories260K')): Promise<string[]> {
  const tokenizerJson = new Uint8Array(await readFile(join(tokenizerDir, 'tokenizer.json')));
  const stories = JSON.parse(await readFile(join(tokenizerDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const written: string[] = [];
  for (const spec of TINY_MODELS) {
    const dir = join(outDir, spec.name);
    await mkdir(dir, { recursive: true });
    for (const [file, bytes] of buildTinyModel(spec, tokenizerJson, stories)) {
      await writeFile(join(dir, file), bytes);
      written.push(join(spec.name, file));
    }
    await writeFile(join(dir, 'reference_greedy.json'), await goldenGreedy(dir));
    written.push(join(spec.name, 'reference_greedy.json'));
  }
  return written;
}

/** reference_greedy.json of a written model folder (same fields as stories260K's). */
async function goldenGreedy(dir: string): Promise<Uint8Array> {
  const model = await loadModel(localFolderSource(dir));
  const promptIds = model.tokenizer.encode(GOLDEN_PROMPT);
  const newIds = new ReferenceModel(model.config, model.weights).greedy(promptIds, GOLDEN_NEW_TOKENS, []);
  const golden = {
    description: `Greedy continuation (${GOLDEN_NEW_TOKENS} new tokens, EOS ignored) of the prompt by the f32 ReferenceModel (src/model/reference.ts)`,
    prompt: GOLDEN_PROMPT,
    prompt_ids: promptIds,
    ids: [...promptIds, ...newIds],
    text: model.tokenizer.decode(newIds),
  };
  return new TextEncoder().encode(JSON.stringify(golden, null, 1) + '\n');
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Values for one tensor: norms ≈ 1, biases small, linear weights ~ N(0, gain²/fan_in). */
function initTensor(name: string, shape: number[], rand: () => number): Float32Array {
  const n = numel(shape);
  const out = new Float32Array(n);
  let mean = 0;
  let std: number;
  if (name.endsWith('norm.weight')) {
    mean = 1;
    std = 0.1;
  } else if (name.endsWith('.bias')) {
    std = 0.2;
  } else if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') {
    std = 4 / Math.sqrt(shape[1]); // logits = head · normed x: std ≈ 4
  } else {
    // Somewhat peaked attention; sublayer outputs large enough that a tied head does not just echo the input token.
    const gain = /q_proj|k_proj/.test(name) ? 1.5 : /o_proj|down_proj/.test(name) ? 3 : 1;
    std = gain / Math.sqrt(shape[1]);
  }
  for (let i = 0; i < n; i++) out[i] = mean + std * rand();
  return out;
}

/** Standard normal samples from a seeded mulberry32 through Box–Muller. */
function normal(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => {
    const u = 1 - uniform(); // (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** Split tensors (in name order) into n groups of roughly equal bytes. */
function splitShards(tensors: TensorToWrite[], n: number): TensorToWrite[][] {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
  const total = sorted.reduce((s, t) => s + t.data.length, 0);
  const groups: TensorToWrite[][] = Array.from({ length: n }, () => []);
  let acc = 0;
  for (const t of sorted) {
    const g = Math.min(n - 1, Math.floor((acc * n) / total));
    groups[g].push(t);
    acc += t.data.length;
  }
  return groups;
}

function readme(spec: TinyModelSpec): string {
  const c = spec.config;
  return [
    `# ${spec.name}`,
    '',
    'Random weights for tests: generated by `scripts/make-tiny-models.ts` (do not edit by hand;',
    `re-run the script). Seed ${spec.seed}, ${spec.dtype} weights${spec.shards > 1 ? `, ${spec.shards} shards` : ''}.`,
    '',
    `${String(c.model_type)}: hidden ${String(c.hidden_size)}, ${String(c.num_hidden_layers)} layers, ${String(c.num_attention_heads)} heads, ` +
      `${String(c.num_key_value_heads)} KV heads, vocab ${String(c.vocab_size)}.`,
    '',
    "Tokenizer: stories260K's 512-token vocabulary (MIT, Andrej Karpathy), with a plain-text chat template.",
    'The outputs are meaningless text; what matters is that they are deterministic.',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = resolve(process.argv[2] ?? 'public/models');
  const files = await makeTinyModels(outDir);
  console.log(`wrote ${files.length} files under ${outDir}`);
}
