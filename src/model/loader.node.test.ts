/**
 * loadModel on the tiny models in public/models (single file and sharded) and on broken
 * copies of them built in a temp dir; plus the generator script's determinism.
 */
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_MODELS, makeTinyModels } from '../../scripts/make-tiny-models.ts';
import { loadModel } from './loader.ts';
import { ReferenceModel } from './reference.ts';
import { f32ToF16Bits } from '../gpu/f16.ts';
import type { CpuTensor } from './weights-cpu.ts';
import { parseSafetensors, serializeSafetensors, type TensorDtype, type TensorToWrite } from './safetensors.ts';
import { localFolderSource, type FileProgress } from './source.ts';

const models = resolve('public/models');
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastcache-loader-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A writable copy of a model folder. */
async function copyModel(name: string, as: string): Promise<string> {
  const dir = join(tmp, as);
  await cp(join(models, name), dir, { recursive: true });
  return dir;
}

/** Rewrite dir/file's tensors through fn (raw bytes kept). */
async function rewriteSafetensors(dir: string, file: string, fn: (t: TensorToWrite[]) => TensorToWrite[]): Promise<void> {
  const bytes = new Uint8Array(await readFile(join(dir, file)));
  const { tensors, dataOffset } = parseSafetensors(bytes);
  const list = [...tensors.values()].map((t) => ({
    name: t.name, dtype: t.dtype, shape: t.shape,
    data: bytes.slice(dataOffset + t.byteOffset, dataOffset + t.byteOffset + t.byteLength),
  }));
  await writeFile(join(dir, file), serializeSafetensors(fn(list)));
}

async function editJson(path: string, fn: (j: Record<string, unknown>) => void): Promise<void> {
  const j = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  fn(j);
  await writeFile(path, JSON.stringify(j));
}

describe('tiny models', () => {
  for (const spec of TINY_MODELS) {
    it(`${spec.name}: loads, and the reference reproduces its reference_greedy.json`, async () => {
      const events: FileProgress[] = [];
      const model = await loadModel(localFolderSource(join(models, spec.name)), { onProgress: (p) => events.push(p) });
      const c = model.config;
      expect(c.architecture).toBe(spec.config.model_type);
      expect(c.tieWordEmbeddings).toBe(model.weights.get('lm_head.weight') === undefined);
      expect(model.weights.get('model.layers.0.self_attn.q_proj.weight')!.dtype).toBe(spec.dtype === 'F16' ? 'f16' : 'f32');
      const weightFiles = spec.shards > 1 ? ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'] : ['model.safetensors'];
      for (const f of weightFiles) expect(events.some((e) => e.file === f && e.loaded === e.total)).toBe(true);

      const golden = JSON.parse(await readFile(join(models, spec.name, 'reference_greedy.json'), 'utf8')) as { prompt: string; prompt_ids: number[]; ids: number[] };
      expect(model.tokenizer.encode(golden.prompt)).toEqual(golden.prompt_ids);
      const ref = new ReferenceModel(c, model.weights);
      const out = ref.greedy(golden.prompt_ids, golden.ids.length - golden.prompt_ids.length, []);
      expect(out).toEqual(golden.ids.slice(golden.prompt_ids.length));
      // Outputs depend on the prompt (the random weights are not degenerate).
      const chat = model.tokenizer.applyChatTemplate([{ role: 'user', content: 'Where is the ball?' }]);
      expect(model.tokenizer.decode(chat)).toBe('<s> User: Where is the ball?\nAssistant:');
      expect(ref.greedy(chat, 8, [])).not.toEqual(out.slice(0, 8));
    });
  }

  it('the sharded copy loads the same weights as the single file', async () => {
    const single = await loadModel(localFolderSource(join(models, 'tiny-qwen2')));
    const sharded = await loadModel(localFolderSource(join(models, 'tiny-qwen2-sharded')));
    expect([...sharded.weights.keys()].sort()).toEqual([...single.weights.keys()].sort());
    for (const [name, t] of single.weights) expect(sharded.weights.get(name)!.data).toEqual(t.data);
  });

  it('weightDtype: f16 rounds F32/BF16 and flushes subnormals, f32 widens F16 exactly; an F16 file gives identical logits either way but for that flush', async () => {
    const stories16 = await loadModel(localFolderSource(join(models, 'stories260K')), { weightDtype: 'f16' });
    expect([...stories16.weights.values()].every((t) => t.dtype === 'f16' && t.data instanceof Uint16Array)).toBe(true);
    const gqa16 = await loadModel(localFolderSource(join(models, 'tiny-llama-gqa')), { weightDtype: 'f16' });
    const gqa32 = await loadModel(localFolderSource(join(models, 'tiny-llama-gqa')), { weightDtype: 'f32' });
    expect([...gqa32.weights.values()].every((t) => t.dtype === 'f32')).toBe(true);
    // the f16 load holds the file's bits except subnormals (|x| < 2^-14), flushed to a zero of their sign
    let flushed = 0, differ = 0;
    const gqa32Flushed = new Map<string, CpuTensor>();
    for (const [name, t] of gqa32.weights) {
      const bits = gqa16.weights.get(name)!.data as Uint16Array;
      const values = (t.data as Float32Array).map((v, i) => {
        const sub = v !== 0 && Math.abs(v) < 2 ** -14;
        if (sub) flushed++;
        const want = sub ? v * 0 : v; // a zero of v's sign
        if (f32ToF16Bits(want) !== bits[i]) differ++;
        return want;
      });
      gqa32Flushed.set(name, { ...t, data: values });
    }
    expect(differ).toBe(0);
    expect(flushed).toBeGreaterThan(0); // the file has some: the flush is exercised
    const prompt = [1, 403, 407];
    expect(new ReferenceModel(gqa16.config, gqa16.weights).forward(prompt)).toEqual(new ReferenceModel(gqa32.config, gqa32Flushed).forward(prompt));
  });

  it('reads a VLM-style checkpoint (model.text_model.* names, extra I64 tensor) under canonical names', async () => {
    const dir = await copyModel('tiny-qwen2', 'vlm-prefix');
    await rewriteSafetensors(dir, 'model.safetensors', (list) => [
      ...list.map((t) => ({ ...t, name: t.name.replace(/^model\./, 'model.text_model.') })),
      { name: 'model.vision_model.embeddings.position_ids', dtype: 'I64' as TensorDtype, shape: [1, 4], data: new Uint8Array(32) },
    ]);
    await editJson(join(dir, 'config.json'), (j) => {
      const text = { ...j };
      for (const k of Object.keys(j)) delete j[k];
      Object.assign(j, { architectures: ['Idefics3ForConditionalGeneration'], model_type: 'idefics3', image_token_id: 49190, vision_config: { hidden_size: 8 }, text_config: text });
    });
    const vlm = await loadModel(localFolderSource(dir));
    const plain = await loadModel(localFolderSource(join(models, 'tiny-qwen2')));
    expect([...vlm.weights.keys()].sort()).toEqual([...plain.weights.keys()].sort());
    expect(vlm.weights.get('model.embed_tokens.weight')!.data).toEqual(plain.weights.get('model.embed_tokens.weight')!.data);
    expect(vlm.vision).toEqual({ kind: 'idefics3', imageTokenId: 49190, visionHidden: 8 });
  });
});

describe('broken models give clear errors', () => {
  it('a tensor of the wrong shape', async () => {
    const dir = await copyModel('tiny-llama-gqa', 'bad-shape');
    await rewriteSafetensors(dir, 'model.safetensors', (list) =>
      list.map((t) => (t.name === 'model.layers.2.self_attn.k_proj.weight' ? { ...t, shape: [32, 32] } : t)),
    );
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(
      /tensor "model.layers.2.self_attn.k_proj.weight" in model.safetensors has shape \[32, 32\], expected \[16, 64\]/,
    );
  });

  it('a tensor of an unsupported dtype', async () => {
    const dir = await copyModel('tiny-llama-gqa', 'bad-dtype');
    await rewriteSafetensors(dir, 'model.safetensors', (list) =>
      list.map((t) => (t.name === 'model.layers.1.mlp.up_proj.weight' ? { ...t, dtype: 'I16' as TensorDtype } : t)),
    );
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/tensor "model.layers.1.mlp.up_proj.weight" has dtype I16, expected F32, F16 or BF16/);
  });

  it('a missing tensor (and a missing lm_head when untied)', async () => {
    const dir = await copyModel('tiny-llama-gqa', 'missing');
    await rewriteSafetensors(dir, 'model.safetensors', (list) => list.filter((t) => t.name !== 'model.layers.3.mlp.down_proj.weight' && t.name !== 'lm_head.weight'));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/missing tensors "model.layers.3.mlp.down_proj.weight" \[64, 128\], "lm_head.weight" \[512, 64\]/);
  });

  it('a shard index that lacks a tensor fails before reading shards', async () => {
    const dir = await copyModel('tiny-qwen2-sharded', 'bad-index');
    await editJson(join(dir, 'model.safetensors.index.json'), (j) => {
      delete (j.weight_map as Record<string, string>)['model.layers.0.self_attn.q_proj.bias'];
    });
    await rm(join(dir, 'model-00001-of-00002.safetensors'));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/missing tensor "model.layers.0.self_attn.q_proj.bias" \[64\].*index.json lists no such tensor/);
  });

  it('unsupported architectures', async () => {
    const dir = await copyModel('tiny-llama-gqa', 'mistral');
    await editJson(join(dir, 'config.json'), (j) => Object.assign(j, { architectures: ['MistralForCausalLM'], model_type: 'mistral' }));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/Unsupported architecture: architectures \["MistralForCausalLM"\].*Supported: LlamaForCausalLM/);
    await editJson(join(dir, 'config.json'), (j) => Object.assign(j, { architectures: undefined, model_type: 'gpt2' }));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/Unsupported architecture: model_type "gpt2"/);
  });

  it('a truncated weights file, missing weights, missing config', async () => {
    const dir = await copyModel('tiny-qwen2', 'truncated');
    const bytes = await readFile(join(dir, 'model.safetensors'));
    await writeFile(join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length - 100));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(
      new RegExp(`model.safetensors: safetensors file truncated: expected ${bytes.length} bytes, got ${bytes.length - 100}`),
    );
    await rm(join(dir, 'model.safetensors'));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/no weights found \(looked for model.safetensors and model.safetensors.index.json\)/);
    await rm(join(dir, 'config.json'));
    await expect(loadModel(localFolderSource(dir))).rejects.toThrow(/model file "config.json" not found/);
  });
});

describe('scripts/make-tiny-models.ts', () => {
  it('is deterministic and matches the checked-in files', async () => {
    const [a, b] = [join(tmp, 'gen-a'), join(tmp, 'gen-b')];
    const files = await makeTinyModels(a);
    await makeTinyModels(b);
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      const bytes = await readFile(join(a, f));
      expect(bytes.equals(await readFile(join(b, f))), `${f} differs between runs`).toBe(true);
      expect(bytes.equals(await readFile(join(models, f))), `${f} differs from public/models (re-run the script)`).toBe(true);
    }
    for (const spec of TINY_MODELS) expect((await readdir(join(a, spec.name))).sort()).toEqual((await readdir(join(models, spec.name))).sort());
  });
});
