/**
 * The peers benchmark's model files: the GGUF writer's bytes read back by an
 * independent reader, the q/k row order that makes llama.cpp's pairwise RoPE
 * equal Hugging Face's half-split RoPE, the one-character vocabulary's round
 * trip, and the ONNX export (Debian's torch) decoding stories260K's reference
 * greedy ids through onnxruntime-node with its KV cache.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config.ts';
import { parseSafetensors } from '../../src/model/safetensors.ts';
import { codepointPieces, idsToText, textToIds } from './codepoint-vocab.ts';
import { GGML_TYPE, GGUF_ALIGNMENT, writeGguf } from './gguf-writer.ts';
import { codepointVocab, llamaGguf, pairRotaryRows } from './llama-gguf.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const STORIES = join(ROOT, 'public/models/stories260K');

/** A GGUF v3 reader written from the format's description, independent of the writer. */
function readGguf(bytes: Uint8Array) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const u32 = () => ((o += 4), v.getUint32(o - 4, true));
  const u64 = () => ((o += 8), Number(v.getBigUint64(o - 8, true)));
  const str = () => {
    const n = u64();
    o += n;
    return new TextDecoder().decode(bytes.subarray(o - n, o));
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: return ((o += 4), v.getInt32(o - 4, true));
      case 6: return ((o += 4), v.getFloat32(o - 4, true));
      case 7: return bytes[o++] === 1;
      case 8: return str();
      case 9: {
        const t = u32();
        return Array.from({ length: u64() }, () => value(t));
      }
      default: throw new Error(`type ${type}`);
    }
  };
  expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GGUF');
  o = 4;
  const version = u32(), tensorCount = u64(), kvCount = u64();
  const meta: Record<string, unknown> = {};
  for (let i = 0; i < kvCount; i++) {
    const k = str();
    meta[k] = value(u32());
  }
  const tensors = Array.from({ length: tensorCount }, () => {
    const name = str();
    const ne = Array.from({ length: u32() }, () => u64());
    return { name, ne, type: u32(), offset: u64() };
  });
  const dataStart = Math.ceil(o / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  return { version, meta, tensors, dataStart };
}

const concat = (chunks: Uint8Array[]) => {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) (out.set(c, at), (at += c.length));
  return out;
};

describe('GGUF writer', () => {
  it('writes what a reader finds: metadata of every type, tensor infos with ne reversed, aligned data at the offsets', () => {
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new Uint16Array([0x3c00, 0x4000, 0x4200]);
    const file = concat(writeGguf(
      { 'general.name': { string: 'ü名' }, n: { u32: 7 }, neg: { i32: -3 }, eps: { f32: 0.5 }, yes: { bool: true }, toks: { strings: ['a', '', 'bc'] }, fs: { f32s: [1.5, -2] }, is: { i32s: [1, -1] } },
      [{ name: 'a', shape: [2, 3], type: GGML_TYPE.F32, data: new Uint8Array(a.buffer) }, { name: 'b', shape: [3], type: GGML_TYPE.F16, data: new Uint8Array(b.buffer) }],
    ));
    const r = readGguf(file);
    expect(r.version).toBe(3);
    expect(r.meta).toEqual({ 'general.name': 'ü名', n: 7, neg: -3, eps: 0.5, yes: true, toks: ['a', '', 'bc'], fs: [1.5, -2], is: [1, -1] });
    expect(r.tensors).toEqual([{ name: 'a', ne: [3, 2], type: 0, offset: 0 }, { name: 'b', ne: [3], type: 1, offset: 32 }]);
    expect(r.dataStart % 32).toBe(0);
    expect(new Float32Array(file.slice(r.dataStart, r.dataStart + 24).buffer)).toEqual(a);
    expect(new Uint16Array(file.slice(r.dataStart + 32, r.dataStart + 38).buffer)).toEqual(b);
    expect(file.length).toBe(r.dataStart + 38);
  });

  it('refuses a tensor whose bytes do not match its shape, naming it', () => {
    expect(() => writeGguf({}, [{ name: 'w', shape: [2, 2], type: GGML_TYPE.F32, data: new Uint8Array(12) }])).toThrow(/GGUF tensor w: shape \[2,2\] needs 16 bytes, got 12/);
  });

  it('stories260K as GGUF: ggml names, 47 tensors (tied head absent), the embedding bytes unchanged, the config in llama.* keys', () => {
    const file = new Uint8Array(readFileSync(join(STORIES, 'model.safetensors')));
    const config = parseConfig(JSON.parse(readFileSync(join(STORIES, 'config.json'), 'utf8')));
    const gguf = concat(llamaGguf('stories260K', config, file, parseSafetensors(file), codepointVocab(config.vocabSize)));
    const r = readGguf(gguf);
    expect(r.tensors.length).toBe(2 + 9 * config.numLayers);
    expect(r.tensors.map((t) => t.name)).not.toContain('output.weight');
    expect(r.tensors.find((t) => t.name === 'blk.4.attn_k.weight')!.ne).toEqual([64, 32]);
    const embed = r.tensors.find((t) => t.name === 'token_embd.weight')!;
    const parsed = parseSafetensors(file).tensors.get('model.embed_tokens.weight')!;
    const at = parseSafetensors(file).dataOffset + parsed.byteOffset;
    expect(gguf.subarray(r.dataStart + embed.offset, r.dataStart + embed.offset + parsed.byteLength)).toEqual(file.subarray(at, at + parsed.byteLength));
    expect(r.meta).toMatchObject({ 'llama.block_count': 5, 'llama.attention.head_count': 8, 'llama.attention.head_count_kv': 4, 'llama.rope.dimension_count': 8, 'tokenizer.ggml.eos_token_id': 0, 'tokenizer.ggml.add_space_prefix': false });
    expect(() => llamaGguf('x', { ...config, attentionBias: true }, file, parseSafetensors(file), codepointVocab(512))).toThrow(/plain Llama checkpoints/);
  });
});

/** RoPE on one head: Hugging Face rotates (x[j], x[j + d/2]); llama.cpp's "norm" type rotates (x[2j], x[2j + 1]). */
function rope(x: Float64Array, pos: number, pairs: boolean): Float64Array {
  const d = x.length, out = new Float64Array(d);
  for (let j = 0; j < d / 2; j++) {
    const th = pos / 10000 ** ((2 * j) / d), c = Math.cos(th), s = Math.sin(th);
    const [i0, i1] = pairs ? [2 * j, 2 * j + 1] : [j, j + d / 2];
    out[i0] = x[i0] * c - x[i1] * s;
    out[i1] = x[i0] * s + x[i1] * c;
  }
  return out;
}

describe('q/k rows for llama.cpp', () => {
  it('attention scores are unchanged: rope_half(Wq x)·rope_half(Wk y) = rope_pairs(P Wq x)·rope_pairs(P Wk y)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }).map((h) => 2 * h), fc.integer({ min: 1, max: 5 }), fc.nat(40), fc.nat(40), fc.integer(), (heads, hd, cols, p, q, seed) => {
      let s = seed >>> 0;
      const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
      const W = Float32Array.from({ length: heads * hd * cols }, rnd), V = Float32Array.from({ length: heads * hd * cols }, rnd);
      const x = Float32Array.from({ length: cols }, rnd), y = Float32Array.from({ length: cols }, rnd);
      const mv = (M: Float32Array, v: Float32Array, h: number) => Float64Array.from({ length: hd }, (_, r) => v.reduce((a, vi, c) => a + M[(h * hd + r) * cols + c] * vi, 0));
      const Wp = pairRotaryRows(W, heads, hd, cols), Vp = pairRotaryRows(V, heads, hd, cols);
      for (let h = 0; h < heads; h++) {
        const dot = (a: Float64Array, b: Float64Array) => a.reduce((acc, ai, i) => acc + ai * b[i], 0);
        const hf = dot(rope(mv(W, x, h), p, false), rope(mv(V, y, h), q, false));
        const cpp = dot(rope(mv(Wp, x, h), p, true), rope(mv(Vp, y, h), q, true));
        expect(cpp).toBeCloseTo(hf, 9);
      }
    }), { numRuns: 200, seed: 17 });
  });
});

describe('the one-character vocabulary', () => {
  it('round-trips any ids ≥ 1 through text; id 0 and foreign text are refused', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 49151 }), { maxLength: 64 }), (ids) => {
      expect(textToIds(idsToText(ids))).toEqual(ids);
    }), { numRuns: 1000, seed: 5 });
    expect(new Set(codepointPieces(49152)).size).toBe(49152);
    expect(() => idsToText([0])).toThrow(/token id 0 has no text/);
    expect(() => textToIds('a')).toThrow(/is not a token/);
  });
});

describe('ONNX export (bench/peers/export_onnx.py)', () => {
  it("decodes stories260K's reference greedy ids with its KV cache in onnxruntime", async () => {
    const out = mkdtempSync(join(tmpdir(), 'peers-onnx-'));
    try {
      const r = spawnSync('/usr/bin/python3', [join(ROOT, 'bench/peers/export_onnx.py'), '--model', STORIES, '--out', out], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const ort = await import('onnxruntime-node');
      const session = await ort.InferenceSession.create(join(out, 'onnx/model.onnx'));
      const ref = JSON.parse(readFileSync(join(STORIES, 'reference_greedy.json'), 'utf8')) as { ids: number[] };
      const L = 5, kvh = 4, hd = 8, V = 512;
      const i64 = (xs: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(xs, BigInt), dims);
      let past: Record<string, InstanceType<typeof ort.Tensor>> = {};
      for (let l = 0; l < L; l++) for (const kv of ['key', 'value']) past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvh, 0, hd]);
      // the prompt in one call (BOS + 3 tokens), then one token per call
      let ids = ref.ids.slice(0, 4), pos = 0;
      const got: number[] = [];
      for (let step = 0; step < 24; step++) {
        const res = await session.run({ input_ids: i64(ids, [1, ids.length]), attention_mask: i64(Array(pos + ids.length).fill(1), [1, pos + ids.length]), position_ids: i64(ids.map((_, i) => pos + i), [1, ids.length]), ...past });
        const logits = res.logits.data as Float32Array, off = (ids.length - 1) * V;
        let best = 0;
        for (let j = 1; j < V; j++) if (logits[off + j] > logits[off + best]) best = j;
        pos += ids.length;
        ids = [best];
        got.push(best);
        past = {};
        for (let l = 0; l < L; l++) for (const kv of ['key', 'value']) past[`past_key_values.${l}.${kv}`] = res[`present.${l}.${kv}`];
      }
      expect(got).toEqual(ref.ids.slice(4, 28));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
