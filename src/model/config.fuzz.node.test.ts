/**
 * Property-based fuzzing of config.json parsing (fast-check): parseConfig and
 * parseVisionConfig read random valid configs exactly, and refuse wrong types, missing keys,
 * absurd sizes (2^31 hidden, 1e9 layers, vocab 0, negatives, "NaN" strings) and random
 * overrides with an Error that names the field — before the loader reads anything else.
 *
 * Knobs (test/fuzz.ts, docs/fuzzing.md): FUZZ_RUNS=<cases per property, default 1000>,
 * FUZZ_SEED=<int | random>. A failure prints the shrunk counterexample and the seed/path to replay.
 *   FUZZ_RUNS=100000 npx vitest run --project node src/model/config.fuzz.node.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzzParams, rejected, thrown } from '../../test/fuzz.ts';
import { CONFIG_LIMITS, parseConfig, type ModelConfig } from './config.ts';
import { loadModel } from './loader.ts';
import type { ModelSource } from './source.ts';
import { parseVisionConfig } from './vision-config.ts';

type Json = Record<string, unknown>;

const INT_FIELDS = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'max_position_embeddings'] as const;
/** The fields without a default, in the order parseConfig reads them (the first missing one is named). */
const REQUIRED = ['hidden_size', 'num_attention_heads', 'vocab_size', 'intermediate_size', 'num_hidden_layers'] as const;
const NUM_FIELDS = ['rms_norm_eps', 'rope_theta'] as const;
const BOOL_FIELDS = ['tie_word_embeddings', 'attention_bias'] as const;
const ID_FIELDS = ['eos_token_id', 'bos_token_id'] as const;
/** Names Object.prototype has: a lookup table read with `in` would find them. */
const PROTO_NAMES = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];

const tokenId = fc.integer({ min: 0, max: 2 ** 24 - 1 });

/** A valid config.json (top level or a VLM's text_config) and the ModelConfig it means. */
const validArb = fc
  .record({
    arch: fc.constantFrom('llama' as const, 'qwen2' as const),
    naming: fc.constantFrom('class', 'type', 'both'),
    nested: fc.boolean(),
    vocab: fc.integer({ min: 1, max: CONFIG_LIMITS.vocab_size }),
    kvHeads: fc.integer({ min: 1, max: 64 }),
    group: fc.integer({ min: 1, max: 16 }),
    headDim: fc.integer({ min: 1, max: CONFIG_LIMITS.head_dim / 2 }).map((x) => 2 * x),
    hidden: fc.option(fc.integer({ min: 1, max: CONFIG_LIMITS.hidden_size }), { nil: undefined }),
    intermediate: fc.integer({ min: 1, max: CONFIG_LIMITS.intermediate_size }),
    layers: fc.integer({ min: 1, max: CONFIG_LIMITS.num_hidden_layers }),
    maxPos: fc.option(fc.integer({ min: 1, max: CONFIG_LIMITS.max_position_embeddings }), { nil: undefined }),
    eps: fc.option(fc.double({ min: 1e-12, max: 1, noNaN: true }), { nil: undefined }),
    theta: fc.option(fc.double({ min: 1, max: 1e7, noNaN: true }), { nil: undefined }),
    tie: fc.option(fc.boolean(), { nil: undefined }),
    bias: fc.option(fc.boolean(), { nil: undefined }),
    kvExplicit: fc.boolean(),
    eos: fc.option(fc.oneof(tokenId, fc.array(tokenId, { maxLength: 3 })), { nil: undefined }),
    bos: fc.option(tokenId, { nil: undefined }),
  })
  .map((g) => {
    const numHeads = g.kvHeads * g.group;
    // Without head_dim the parser derives it from hidden_size, which must then be heads × head_dim.
    const derive = g.hidden === undefined && numHeads * g.headDim <= CONFIG_LIMITS.hidden_size;
    const hidden = derive ? numHeads * g.headDim : g.hidden ?? 64;
    const c: Json = { vocab_size: g.vocab, hidden_size: hidden, intermediate_size: g.intermediate, num_hidden_layers: g.layers, num_attention_heads: numHeads };
    if (g.naming !== 'type') c.architectures = [g.arch === 'llama' ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM'];
    if (g.naming !== 'class') c.model_type = g.arch;
    if (g.kvHeads !== numHeads || g.kvExplicit) c.num_key_value_heads = g.kvHeads;
    if (!derive) c.head_dim = g.headDim;
    const opt: [string, unknown][] = [['max_position_embeddings', g.maxPos], ['rms_norm_eps', g.eps], ['rope_theta', g.theta], ['tie_word_embeddings', g.tie], ['attention_bias', g.bias], ['eos_token_id', g.eos], ['bos_token_id', g.bos]];
    for (const [k, v] of opt) if (v !== undefined) c[k] = v;
    const want: ModelConfig = {
      architecture: g.arch, vocabSize: g.vocab, hiddenSize: hidden, intermediateSize: g.intermediate, numLayers: g.layers, numHeads, numKvHeads: g.kvHeads,
      headDim: g.headDim, maxPositions: g.maxPos ?? (g.arch === 'llama' ? 2048 : 32768), rmsNormEps: g.eps ?? 1e-6, ropeTheta: g.theta ?? 10000,
      tieWordEmbeddings: g.tie ?? false, attentionBias: g.arch === 'qwen2' ? true : g.bias ?? false,
      eosTokenIds: g.eos === undefined ? [] : Array.isArray(g.eos) ? g.eos : [g.eos],
    };
    if (g.bos !== undefined) want.bosTokenId = g.bos;
    const json = g.nested ? { architectures: ['Idefics3ForConditionalGeneration'], model_type: 'idefics3', text_config: c } : c;
    return { json, text: c, want };
  });

/** What any config parseConfig accepts must satisfy, whatever it was given. */
function checkConfig(c: ModelConfig): void {
  expect(['llama', 'qwen2']).toContain(c.architecture);
  const sizes: [number, number][] = [
    [c.vocabSize, CONFIG_LIMITS.vocab_size], [c.hiddenSize, CONFIG_LIMITS.hidden_size], [c.intermediateSize, CONFIG_LIMITS.intermediate_size],
    [c.numLayers, CONFIG_LIMITS.num_hidden_layers], [c.numHeads, CONFIG_LIMITS.num_attention_heads], [c.numKvHeads, CONFIG_LIMITS.num_key_value_heads],
    [c.headDim, CONFIG_LIMITS.head_dim], [c.maxPositions, CONFIG_LIMITS.max_position_embeddings],
  ];
  for (const [v, max] of sizes) expect(Number.isSafeInteger(v) && v >= 1 && v <= max, `size ${v} (limit ${max})`).toBe(true);
  expect(c.numHeads % c.numKvHeads).toBe(0);
  expect(c.headDim % 2).toBe(0);
  for (const x of [c.rmsNormEps, c.ropeTheta]) expect(Number.isFinite(x) && x > 0).toBe(true);
  for (const id of [...c.eosTokenIds, ...(c.bosTokenId === undefined ? [] : [c.bosTokenId])]) expect(Number.isSafeInteger(id) && id >= 0 && id < 2 ** 24).toBe(true);
  expect(typeof c.tieWordEmbeddings === 'boolean' && typeof c.attentionBias === 'boolean').toBe(true);
}

/** Values of the wrong type for any field. */
const wrongType = fc.oneof(
  fc.constantFrom('NaN', 'Infinity', '1e9', '64', '', 'true', ...PROTO_NAMES),
  fc.string({ maxLength: 6 }),
  fc.boolean(),
  fc.array(fc.nat(9), { minLength: 1, maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.nat(9), { maxKeys: 2 }),
);

/** Numbers a positive-integer field must refuse: ≤ 0, fractional, NaN/∞, or above its limit. */
const badInt = (limit: number) =>
  fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 0 }),
    fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x)),
    fc.constantFrom(NaN, Infinity, -Infinity, 2 ** 31, 1e9, 2 ** 53, 1e300, -0),
    fc.integer({ min: limit + 1, max: Number.MAX_SAFE_INTEGER }),
  );

describe('config.json fuzz', () => {
  it('random valid configs (llama / qwen2, named by class or model_type, top level or text_config, defaults or not) parse to exactly what they say', () => {
    fc.assert(
      fc.property(validArb, ({ json, want }) => {
        const c = parseConfig(json);
        expect(c).toEqual(want);
        checkConfig(c);
        // Through JSON text too: what a file holds, not only what a test builds.
        expect(parseConfig(JSON.parse(JSON.stringify(json)))).toEqual(want);
      }),
      fuzzParams(),
    );
  });

  it('a size field of the wrong type, ≤ 0, fractional, NaN, or absurd (2^31, 1e9, 2^53): an error naming the field', () => {
    const bad = fc.constantFrom(...INT_FIELDS).chain((key) => fc.tuple(fc.constant(key), fc.oneof(wrongType, badInt(CONFIG_LIMITS[key]))));
    fc.assert(
      fc.property(validArb, bad, ({ text }, [key, value]) => {
        const err = thrown(() => parseConfig({ ...text, [key]: value }));
        expect(err?.message).toMatch(new RegExp(`^config\\.json: field "${key}" (must be a positive integer, got |is [\\d.e+]+, above the limit ${CONFIG_LIMITS[key]} )`));
      }),
      fuzzParams(),
    );
  });

  it('a number, boolean or token-id field of the wrong type or range: an error naming the field', () => {
    const badNum = fc.oneof(wrongType, fc.double({ max: 0, noNaN: true }), fc.constantFrom(NaN, Infinity, -Infinity));
    const badId = fc.oneof(wrongType, fc.integer({ max: -1 }), fc.double({ noNaN: true }).filter((x) => !Number.isInteger(x)), fc.constantFrom(2 ** 24, 2 ** 31, 1e300, NaN), fc.array(fc.constantFrom(-1, 0.5, 'x', 2 ** 31), { minLength: 1, maxLength: 2 }));
    const bad = fc.oneof(
      fc.tuple(fc.constantFrom(...NUM_FIELDS), badNum, fc.constant(/must be a positive number, got /)),
      fc.tuple(fc.constantFrom(...BOOL_FIELDS), wrongType.filter((v) => typeof v !== 'boolean'), fc.constant(/must be true or false, got /)),
      fc.tuple(fc.constantFrom(...ID_FIELDS), badId.filter((v) => !(Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 24))), fc.constant(/must be a token id \(an integer from 0 to 16777215\) or a list of token ids, got /)),
    );
    fc.assert(
      fc.property(validArb, bad, ({ text }, [key, value, pattern]) => {
        const arch = { ...text, architectures: ['LlamaForCausalLM'] }; // qwen2 never reads attention_bias
        const err = thrown(() => parseConfig({ ...arch, [key]: value }));
        expect(err?.message).toMatch(new RegExp(`^config\\.json: field "${key}" ${pattern.source}`));
      }),
      fuzzParams(),
    );
  });

  it('a missing (or null) required field: "missing field"; no architecture: "Unsupported architecture"', () => {
    fc.assert(
      fc.property(validArb, fc.subarray([...REQUIRED], { minLength: 1 }), fc.boolean(), ({ json, text }, keys, asNull) => {
        const c: Json = { ...text };
        for (const k of keys) if (asNull) c[k] = null; else delete c[k];
        const nested = json !== text;
        const err = thrown(() => parseConfig(nested ? { ...json, text_config: c } : c));
        // (A VLM may keep vocab_size on its outer config; these do not.)
        expect(err?.message).toBe(`config.json: missing field "${REQUIRED.find((k) => keys.includes(k))}"`);
        const { architectures: _a, model_type: _m, ...anonymous } = text;
        expect(thrown(() => parseConfig(anonymous))?.message).toMatch(/^Unsupported architecture: config\.json names no architectures or model_type\. Supported: /);
      }),
      fuzzParams(),
    );
  });

  it('random overrides of a valid config (any JSON, prototype names, nested objects): a config within every limit, or an Error from config.json', () => {
    const keys = fc.constantFrom(...INT_FIELDS, ...NUM_FIELDS, ...BOOL_FIELDS, ...ID_FIELDS, 'architectures', 'model_type', 'text_config', 'hidden_act', 'rope_scaling', 'rope_parameters', 'mlp_bias', 'use_sliding_window', ...PROTO_NAMES);
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      wrongType,
      fc.constantFrom(PROTO_NAMES, ['LlamaForCausalLM', 'constructor'], { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 }, { type: 'linear', factor: -1 }, { rope_type: 'yarn' }, { rope_theta: 0 }, { toString: 1 }, { valueOf: 'x', toString: 'y' }, { rope_type: 'default', rope_theta: 5e5 }),
      fc.integer({ min: -10, max: 2 ** 31 }),
    );
    fc.assert(
      fc.property(validArb, fc.array(fc.tuple(keys, value), { minLength: 1, maxLength: 4 }), ({ json }, overrides) => {
        const c: Json = JSON.parse(JSON.stringify(json)) as Json;
        const target = (c.text_config ?? c) as Json;
        for (const [k, v] of overrides) Object.defineProperty(target, k, { value: v, enumerable: true, writable: true, configurable: true });
        let parsed: ModelConfig | undefined;
        const err = thrown(() => (parsed = parseConfig(c)));
        if (err) expect(err.message).toMatch(/^(config\.json: |Unsupported architecture: )/);
        else checkConfig(parsed!);
      }),
      fuzzParams(),
    );
  });
});

describe('config.json fuzz: the vision part', () => {
  const vlm = fc.record({
    model_type: fc.constantFrom('idefics3', 'smolvlm', 'llava'),
    image_token_id: tokenId,
    vision_config: fc.record({ hidden_size: fc.integer({ min: 1, max: 2 ** 18 }) }),
    projector_hidden_act: fc.constantFrom('gelu', 'gelu_pytorch_tanh'),
  });

  it('valid VLM configs parse exactly; random overrides give a valid spec, null, or an Error naming the field', () => {
    const keys = fc.constantFrom('model_type', 'image_token_id', 'image_token_index', 'vision_config', 'projector_hidden_act', 'vision_feature_select_strategy', ...PROTO_NAMES);
    const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), wrongType, fc.constantFrom(...PROTO_NAMES, 'llava', 'idefics3', -1, 2 ** 24, 1e300, { hidden_size: -4 }, { hidden_size: 2 ** 31 }, { hidden_size: '768' }, [768], { toString: 1 }));
    fc.assert(
      fc.property(vlm, fc.array(fc.tuple(keys, value), { maxLength: 3 }), (good, overrides) => {
        const spec = parseVisionConfig(good);
        expect(spec).toEqual({
          kind: good.model_type === 'llava' ? 'llava' : 'idefics3', imageTokenId: good.image_token_id, visionHidden: good.vision_config.hidden_size,
          ...(good.model_type === 'llava' ? { projectorAct: good.projector_hidden_act === 'gelu' ? 'none' : 'tanh' } : {}),
        });
        const c: Json = { ...good };
        for (const [k, v] of overrides) Object.defineProperty(c, k, { value: v, enumerable: true, writable: true, configurable: true });
        let out: ReturnType<typeof parseVisionConfig> | undefined;
        const err = thrown(() => (out = parseVisionConfig(c)));
        if (err) expect(err.message).toMatch(/^config\.json: /);
        else if (out !== null) {
          expect(['idefics3', 'llava']).toContain(out!.kind);
          expect(Number.isSafeInteger(out!.imageTokenId) && out!.imageTokenId >= 0 && out!.imageTokenId < 2 ** 24).toBe(true);
          expect(Number.isSafeInteger(out!.visionHidden) && out!.visionHidden >= 1 && out!.visionHidden <= 2 ** 18).toBe(true);
        }
      }),
      fuzzParams(),
    );
  });
});

describe('config.json fuzz: through loadModel', () => {
  /** A model folder holding only the given config.json, recording every file asked for. */
  function configOnly(bytes: Uint8Array): { source: ModelSource; asked: string[] } {
    const asked: string[] = [];
    const source: ModelSource = {
      id: 'fuzz',
      readFile: async (f) => {
        asked.push(f);
        if (f === 'config.json') return bytes;
        throw new Error(`model file "${f}" not found`);
      },
      has: async (f) => {
        asked.push(`has:${f}`);
        return f === 'config.json';
      },
    };
    return { source, asked };
  }

  it('an absurd or mistyped config.json is refused, naming the field, before any other file is asked for', async () => {
    const bad = fc.oneof(
      fc.constantFrom(...INT_FIELDS).chain((key) => fc.tuple(fc.constant(key), fc.oneof(wrongType, badInt(CONFIG_LIMITS[key]).filter((v) => Number.isFinite(v))))),
    );
    await fc.assert(
      fc.asyncProperty(validArb, bad, async ({ text }, [key, value]) => {
        const { source, asked } = configOnly(new TextEncoder().encode(JSON.stringify({ ...text, [key]: value })));
        const err = await rejected(() => loadModel(source));
        expect(err?.message).toMatch(new RegExp(`^model fuzz: config\\.json: field "${key}" `));
        expect(asked).toEqual(['config.json']);
      }),
      fuzzParams(),
    );
  });

  it('a config.json that is not a JSON object, or not JSON: an error naming config.json', async () => {
    const content = fc.oneof(
      fc.jsonValue().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 12 }).filter((s) => {
        try {
          JSON.parse(s);
          return false;
        } catch {
          return true;
        }
      }),
    );
    await fc.assert(
      fc.asyncProperty(content, async (text) => {
        const { source, asked } = configOnly(new TextEncoder().encode(text));
        const err = await rejected(() => loadModel(source));
        expect(err?.message).toMatch(/^model fuzz: config\.json (must hold a JSON object, got (null|an array|a \w+)|is not valid JSON: )/);
        expect(asked).toEqual(['config.json']);
      }),
      fuzzParams(),
    );
  });
});
