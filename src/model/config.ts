/**
 * ModelConfig: the shape of a decoder-only text model, parsed from a Hugging Face
 * `config.json` (LlamaForCausalLM / Qwen2ForCausalLM, or the `text_config` of a VLM
 * such as Idefics3/SmolVLM whose text tower is a Llama).
 *
 * Defaults follow transformers' LlamaConfig / Qwen2Config for the fields those classes
 * default; every other field must be present and valid, and an error names it.
 */

export type Architecture = 'llama' | 'qwen2';

import type { RopeScaling } from '../gpu/kernels/rope.ts';
export type { RopeScaling };

export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias: Qwen2 always, Llama when `attention_bias` is true. */
  attentionBias: boolean;
  bosTokenId?: number;
  eosTokenIds: number[];
}

/** HF class name → architecture, and model_type → architecture. */
const ARCH_BY_CLASS: Record<string, Architecture> = { LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2' };
const ARCH_BY_TYPE: Record<string, Architecture> = { llama: 'llama', qwen2: 'qwen2' };
const SUPPORTED = 'LlamaForCausalLM (model_type "llama"), Qwen2ForCausalLM (model_type "qwen2")';

/** Defaults of transformers' config classes for fields checkpoints often omit. */
const DEFAULTS: Record<Architecture, { maxPositions: number; rmsNormEps: number; ropeTheta: number; tie: boolean }> = {
  llama: { maxPositions: 2048, rmsNormEps: 1e-6, ropeTheta: 10000, tie: false },
  qwen2: { maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, tie: false },
};

/**
 * Upper bounds on sizes, far above any checkpoint a browser could hold (Llama 3.1 405B: hidden
 * 16384, 126 layers; Gemma: vocab 262144; long-context Qwen: ~1M positions). A config past one
 * is corrupt or hostile, and must stop here: the loader builds a table of tensor names per
 * layer and the engine sizes buffers from these numbers before a single weight is read.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  vocab_size: 2 ** 24, hidden_size: 2 ** 18, intermediate_size: 2 ** 20, num_hidden_layers: 1024,
  num_attention_heads: 1024, num_key_value_heads: 1024, head_dim: 4096,
  max_position_embeddings: 2 ** 24, original_max_position_embeddings: 2 ** 24,
};

/** Token ids index a vocabulary, which is at most CONFIG_LIMITS.vocab_size long. */
const MAX_TOKEN_ID = 2 ** 24;

type Json = Record<string, unknown>;

/** Parse an HF config.json object. Throws an Error naming the unsupported architecture or bad field. */
export function parseConfig(json: unknown): ModelConfig {
  if (!isObject(json)) throw new Error('config.json: expected a JSON object');
  // A VLM wraps its text decoder's config; the wrapper's own class names the whole model.
  const nested = isObject(json.text_config);
  const c: Json = nested ? (json.text_config as Json) : json;
  const architecture = detectArchitecture(c, nested, nested ? json : null);
  const d = DEFAULTS[architecture];

  const hiddenSize = posInt(c, 'hidden_size');
  const numHeads = posInt(c, 'num_attention_heads');
  const numKvHeads = c.num_key_value_heads == null ? numHeads : posInt(c, 'num_key_value_heads');
  if (numHeads % numKvHeads !== 0) {
    throw new Error(`config.json: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  let headDim: number;
  if (c.head_dim == null) {
    if (hiddenSize % numHeads !== 0) {
      throw new Error(`config.json: head_dim missing and hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
    }
    headDim = hiddenSize / numHeads;
  } else headDim = posInt(c, 'head_dim');
  if (headDim % 2 !== 0) throw new Error(`config.json: head_dim must be even for RoPE, got ${headDim}`);

  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') throw new Error(`config.json: hidden_act "${text(act)}" is not supported (only "silu")`);
  if (c.mlp_bias === true) throw new Error('config.json: mlp_bias=true is not supported');
  if (c.use_sliding_window === true) throw new Error('config.json: use_sliding_window=true is not supported');

  const tie = json.tie_word_embeddings ?? c.tie_word_embeddings;
  const eos = c.eos_token_id ?? (nested ? json.eos_token_id : undefined);
  const bos = c.bos_token_id ?? (nested ? json.bos_token_id : undefined);
  const ropeParams = isObject(c.rope_parameters) ? (c.rope_parameters as Json) : null;
  const ropeScaling = parseRopeScaling(c.rope_scaling ?? (ropeParams && ropeParams.rope_type !== 'default' ? ropeParams : null));

  const config: ModelConfig = {
    architecture,
    vocabSize: posInt(c, 'vocab_size', nested ? json : undefined),
    hiddenSize,
    intermediateSize: posInt(c, 'intermediate_size'),
    numLayers: posInt(c, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions: c.max_position_embeddings == null ? d.maxPositions : posInt(c, 'max_position_embeddings'),
    rmsNormEps: c.rms_norm_eps == null ? d.rmsNormEps : posNum(c, 'rms_norm_eps'),
    ropeTheta: c.rope_theta != null ? posNum(c, 'rope_theta') : ropeParams?.rope_theta != null ? posNum(ropeParams, 'rope_theta') : d.ropeTheta,
    tieWordEmbeddings: tie == null ? d.tie : bool(tie, 'tie_word_embeddings'),
    attentionBias: architecture === 'qwen2' ? true : c.attention_bias == null ? false : bool(c.attention_bias, 'attention_bias'),
    eosTokenIds: tokenIds(eos, 'eos_token_id'),
  };
  if (ropeScaling) config.ropeScaling = ropeScaling;
  if (bos != null) config.bosTokenId = tokenIds(bos, 'bos_token_id')[0];
  return config;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function detectArchitecture(c: Json, nested: boolean, outer: Json | null): Architecture {
  const classes = Array.isArray(c.architectures) ? c.architectures.filter((a): a is string => typeof a === 'string') : [];
  const type = typeof c.model_type === 'string' ? c.model_type : undefined;
  // Object.hasOwn, not `in`: an architecture "constructor" must not find Object.prototype's.
  for (const cls of classes) if (Object.hasOwn(ARCH_BY_CLASS, cls)) return ARCH_BY_CLASS[cls];
  // A VLM's text_config may name an internal class (e.g. VLlama3ForCausalLM) with model_type "llama".
  if (type && Object.hasOwn(ARCH_BY_TYPE, type) && (classes.length === 0 || nested)) return ARCH_BY_TYPE[type];
  const named = [
    classes.length ? `architectures ${JSON.stringify(classes)}` : '',
    type ? `model_type "${type}"` : '',
    outer && typeof outer.model_type === 'string' ? `(inside a "${outer.model_type}" config)` : '',
  ].filter(Boolean).join(' ');
  throw new Error(`Unsupported architecture: ${named || 'config.json names no architectures or model_type'}. Supported: ${SUPPORTED}`);
}

function parseRopeScaling(v: unknown): RopeScaling | undefined {
  if (v == null) return undefined;
  if (!isObject(v)) throw new Error('config.json: rope_scaling must be an object or null');
  const type = v.rope_type ?? v.type ?? 'default';
  if (type === 'default') return { ropeType: 'default' };
  if (type === 'linear') return { ropeType: 'linear', factor: posNum(v, 'factor', undefined, 'rope_scaling.') };
  if (type === 'llama3') {
    const r: RopeScaling = {
      ropeType: 'llama3',
      factor: posNum(v, 'factor', undefined, 'rope_scaling.'),
      lowFreqFactor: posNum(v, 'low_freq_factor', undefined, 'rope_scaling.'),
      highFreqFactor: posNum(v, 'high_freq_factor', undefined, 'rope_scaling.'),
      originalMaxPositionEmbeddings: posInt(v, 'original_max_position_embeddings', undefined, 'rope_scaling.'),
    };
    if (r.highFreqFactor! <= r.lowFreqFactor!) {
      throw new Error('config.json: rope_scaling.high_freq_factor must be greater than rope_scaling.low_freq_factor');
    }
    return r;
  }
  throw new Error(`config.json: rope_scaling type "${text(type)}" is not supported (supported: default, linear, llama3)`);
}

/**
 * A config value as an error shows it. Not String(v): an object with its own "toString" key
 * (as JSON can hold) would make the error message itself throw a TypeError. Not JSON.stringify
 * alone: NaN and Infinity would read as null.
 */
function literal(v: unknown): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
}

/** As literal(), but a string as itself (for messages that quote it). */
function text(v: unknown): string {
  return typeof v === 'string' ? v : literal(v);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function field(c: Json, key: string, fallback: Json | undefined, prefix: string): unknown {
  const v = c[key] ?? fallback?.[key];
  if (v == null) throw new Error(`config.json: missing field "${prefix}${key}"`);
  return v;
}

function posInt(c: Json, key: string, fallback?: Json, prefix = ''): number {
  const v = field(c, key, fallback, prefix);
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`config.json: field "${prefix}${key}" must be a positive integer, got ${literal(v)}`);
  }
  const limit = CONFIG_LIMITS[key];
  if (limit !== undefined && v > limit) {
    throw new Error(`config.json: field "${prefix}${key}" is ${v}, above the limit ${limit} that no supported model comes near: the config is corrupt (fix or re-download config.json)`);
  }
  return v;
}

function posNum(c: Json, key: string, fallback?: Json, prefix = ''): number {
  const v = field(c, key, fallback, prefix);
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new Error(`config.json: field "${prefix}${key}" must be a positive number, got ${literal(v)}`);
  }
  return v;
}

function bool(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw new Error(`config.json: field "${key}" must be true or false, got ${literal(v)}`);
  return v;
}

function tokenIds(v: unknown, key: string): number[] {
  if (v == null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_TOKEN_ID) {
      throw new Error(`config.json: field "${key}" must be a token id (an integer from 0 to ${MAX_TOKEN_ID - 1}) or a list of token ids, got ${literal(v)}`);
    }
  }
  return list as number[];
}
