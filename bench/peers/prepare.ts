/**
 * The peers benchmark's model folders, made in Node before the browser
 * starts (bench/run.ts calls preparePeerModels): for each model, one folder
 * under bench/peers-models/ that every runtime reads the same weights from —
 *
 *   config.json, generation_config.json, model.safetensors, tokenizer files   (ours)
 *   onnx/model.onnx                     (transformers.js; bench/peers/export_onnx.py, Debian's torch)
 *   model.gguf                          (wllama / llama.cpp; bench/peers/llama-gguf.ts, with the
 *                                        one-character-per-token vocabulary of codepoint-vocab.ts)
 *
 * stories260K is the real checkpoint (public/models/stories260K); smollm2-135m
 * is SmolLM2-135M's shapes with seeded random weights (bench/synthetic-model.ts)
 * and stories260K's tokenizer files (the benchmark feeds token ids). In these
 * copies the end-of-sequence id is 0 (<unk>, which greedy decoding never
 * picks), so that every runtime decodes the full length with its own stop
 * rule left on and no logit touched. A folder is rebuilt when its inputs change.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseConfig, type ModelConfig } from '../../src/model/config.ts';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from '../../src/model/safetensors.ts';
import { PRESETS, syntheticWeights } from '../synthetic-model.ts';
import { codepointVocab, llamaGguf } from './llama-gguf.ts';

export const PEER_MODELS = ['stories260K', 'smollm2-135m'] as const;
export type PeerModelName = (typeof PEER_MODELS)[number];

const ROOT = resolve(import.meta.dirname, '../..');
export const PEERS_DIR = join(ROOT, 'bench/peers-models');
const STORIES = join(ROOT, 'public/models/stories260K');
const PYTHON = '/usr/bin/python3';
/** Sources whose change rebuilds a folder. */
const INPUTS = ['bench/peers/prepare.ts', 'bench/peers/codepoint-vocab.ts', 'bench/peers/export_onnx.py', 'bench/peers/llama-gguf.ts', 'bench/peers/gguf-writer.ts', 'bench/synthetic-model.ts', 'public/models/stories260K/model.safetensors'];

export async function preparePeerModels(names: readonly string[], log: (s: string) => void): Promise<void> {
  for (const name of names) {
    if (!(PEER_MODELS as readonly string[]).includes(name)) throw new Error(`--models: unknown model '${name}'; known: ${PEER_MODELS.join(', ')}`);
    const dir = join(PEERS_DIR, name);
    const stamp = createHash('sha256').update(name).update(INPUTS.map((f) => readFileSync(join(ROOT, f))).reduce((a, b) => Buffer.concat([a, b]))).digest('hex');
    if (existsSync(join(dir, '.stamp')) && readFileSync(join(dir, '.stamp'), 'utf8') === stamp) continue;
    const t0 = performance.now();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const config = name === 'stories260K' ? copyStories(dir) : writeSynthetic(dir, PRESETS['smollm2-135m']);
    exportOnnx(dir);
    writeGguf(dir, name, config);
    writeFileSync(join(dir, '.stamp'), stamp);
    log(`prepared ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}

function copyStories(dir: string): ModelConfig {
  const config = JSON.parse(readFileSync(join(STORIES, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(STORIES, 'model.safetensors')));
  return writeCommon(dir, { ...config, eos_token_id: 0 });
}

function writeSynthetic(dir: string, c: ModelConfig): ModelConfig {
  const tensors: TensorToWrite[] = [...syntheticWeights(c)].map(([name, t]) => ({
    name, dtype: t.dtype === 'f16' ? 'F16' : 'F32', shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  }));
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
  return writeCommon(dir, {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, num_key_value_heads: c.numKvHeads, head_dim: c.headDim,
    max_position_embeddings: c.maxPositions, rms_norm_eps: c.rmsNormEps, rope_theta: c.ropeTheta, hidden_act: 'silu',
    tie_word_embeddings: c.tieWordEmbeddings, bos_token_id: 1, eos_token_id: 0, torch_dtype: 'float32', attention_bias: false, mlp_bias: false,
  });
}

/** config.json and generation_config.json (eos 0), stories260K's tokenizer files. */
function writeCommon(dir: string, configJson: Record<string, unknown>): ModelConfig {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(configJson, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 0 }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(join(dir, f), readFileSync(join(STORIES, f)));
  return parseConfig(configJson);
}

function exportOnnx(dir: string): void {
  const r = spawnSync(PYTHON, [join(ROOT, 'bench/peers/export_onnx.py'), '--model', dir, '--out', dir], { encoding: 'utf8', env: { ...process.env, PYTHONWARNINGS: 'ignore' } });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.stderr.trim().split('\n').at(-1);
    const fix = r.error || /No module named '(torch|onnx|numpy)'/.test(r.stderr) ? "; the peers benchmark exports with Debian's torch: apt-get install -y python3-torch python3-onnx" : '';
    throw new Error(`exporting ${dir} to ONNX with ${PYTHON} failed (${why})${fix}`);
  }
}

function writeGguf(dir: string, name: string, config: ModelConfig): void {
  const file = new Uint8Array(readFileSync(join(dir, 'model.safetensors')));
  const vocab = codepointVocab(config.vocabSize);
  const fd = openSync(join(dir, 'model.gguf'), 'w');
  try {
    for (const chunk of llamaGguf(name, config, file, parseSafetensors(file), vocab)) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}
