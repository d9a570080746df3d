/**
 * The oracle: a plain TypeScript f32 forward pass of Llama / Qwen2 with a contiguous KV cache,
 * one token at a time, in the manner of llama2.c's run.c. The GPU engine is compared to it
 * token for token.
 *
 * Numerics (the contract the GPU side mirrors):
 * - activations live in Float32Array; every op's result is rounded to f32
 *   (Math.fround or a Float32Array store);
 * - dot products (matvec rows, q·k, p·v) and the RMSNorm sum of squares accumulate in f64
 *   (the products of two f32 are exact in f64) and are rounded once at the end;
 * - RoPE is rotate-half (HF layout); cos/sin are computed in f64 from f64 inv_freq
 *   (1/theta^(2i/d), with HF's linear or llama3 scaling) and position, then rounded to f32;
 * - softmax subtracts the row max, exps, sums in f64, divides;
 * - with kvDtype 'f16', K (after RoPE) and V are rounded to f16 as they enter the cache.
 */
import type { ModelConfig } from './config.ts';
import { ropeInvFreq as kernelRopeInvFreq } from '../gpu/kernels/rope.ts';
import { EMBED, FINAL_NORM, LM_HEAD, expectedTensorShapes, layerTensor, roundF16, toF32, type CpuTensor } from './weights-cpu.ts';

const fr = Math.fround;

// ---------------------------------------------------------------------------------------------
// RoPE tables (shared with the GPU side so both build them the same way)
// ---------------------------------------------------------------------------------------------

/** inv_freq[i] for i < headDim/2, in f64, per HF's default / linear / llama3 rope init (one implementation, shared with the GPU). */
export function ropeInvFreq(config: ModelConfig): Float64Array {
  return kernelRopeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling);
}

/**
 * cos/sin tables for positions [0, numPositions): row p holds cos(p·inv_freq[i]) for
 * i < headDim/2 (f64, rounded to f32). Shapes [numPositions, headDim/2].
 */
export function ropeTable(config: ModelConfig, numPositions: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(config);
  const half = inv.length;
  const cos = new Float32Array(numPositions * half);
  const sin = new Float32Array(numPositions * half);
  for (let p = 0; p < numPositions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Index of the largest logit; the lowest index wins ties (as torch/numpy argmax). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Weights and run state
// ---------------------------------------------------------------------------------------------

interface LayerWeights {
  inputNorm: Float32Array; // [hidden]
  wq: Float32Array; // [heads*headDim, hidden]
  wk: Float32Array; // [kvHeads*headDim, hidden]
  wv: Float32Array; // [kvHeads*headDim, hidden]
  bq: Float32Array | null; // [heads*headDim]
  bk: Float32Array | null; // [kvHeads*headDim]
  bv: Float32Array | null; // [kvHeads*headDim]
  wo: Float32Array; // [hidden, heads*headDim]
  postNorm: Float32Array; // [hidden]
  wGate: Float32Array; // [intermediate, hidden]
  wUp: Float32Array; // [intermediate, hidden]
  wDown: Float32Array; // [hidden, intermediate]
}

interface ModelWeights {
  embed: Float32Array; // [vocab, hidden]
  layers: LayerWeights[];
  finalNorm: Float32Array; // [hidden]
  lmHead: Float32Array; // [vocab, hidden]; the embedding when tied
}

class RunState {
  x: Float32Array; // [hidden] residual stream
  xb: Float32Array; // [hidden] normed input / sublayer output
  q: Float32Array; // [heads*headDim]
  k: Float32Array; // [kvHeads*headDim]
  v: Float32Array; // [kvHeads*headDim]
  att: Float32Array; // [heads*headDim] attention output
  scores: Float32Array; // [capacity] one head's scores, then probabilities
  hb: Float32Array; // [intermediate] gate, then silu(gate)*up
  hb2: Float32Array; // [intermediate] up
  logits: Float32Array; // [vocab]

  constructor(c: ModelConfig) {
    this.x = new Float32Array(c.hiddenSize);
    this.xb = new Float32Array(c.hiddenSize);
    this.q = new Float32Array(c.numHeads * c.headDim);
    this.k = new Float32Array(c.numKvHeads * c.headDim);
    this.v = new Float32Array(c.numKvHeads * c.headDim);
    this.att = new Float32Array(c.numHeads * c.headDim);
    this.scores = new Float32Array(0);
    this.hb = new Float32Array(c.intermediateSize);
    this.hb2 = new Float32Array(c.intermediateSize);
    this.logits = new Float32Array(c.vocabSize);
  }
}

// ---------------------------------------------------------------------------------------------
// ReferenceModel
// ---------------------------------------------------------------------------------------------

export class ReferenceModel {
  readonly config: ModelConfig;
  private readonly w: ModelWeights;
  private readonly s: RunState;
  private readonly kvF16: boolean;
  private readonly inv: Float64Array; // [headDim/2]
  private keys: Float32Array[] = []; // per layer [capacity, kvHeads*headDim]
  private values: Float32Array[] = []; // per layer [capacity, kvHeads*headDim]
  private readonly window: { sinks: number; recent: number } | null;
  private readonly maxPositions: number;
  private capacity = 0;
  private len = 0;
  /** Tokens evicted from the cache: the next token's position is len + evicted. */
  private evicted = 0;

  /**
   * `window`: each token attends to the first `sinks` positions and the last
   * `recent` ones (itself included) — the rolling window's mask, over a cache
   * that keeps everything; `maxPositions`: how far positions may go (default
   * the config's; a windowed run may go past it).
   */
  constructor(config: ModelConfig, weights: Map<string, CpuTensor>, opts: { kvDtype?: 'f32' | 'f16'; window?: { sinks: number; recent: number }; maxPositions?: number } = {}) {
    this.config = config;
    this.window = opts.window ?? null;
    this.maxPositions = opts.maxPositions ?? config.maxPositions;
    this.w = gatherWeights(config, weights);
    this.s = new RunState(config);
    this.kvF16 = opts.kvDtype === 'f16';
    this.inv = ropeInvFreq(config);
    this.reset();
  }

  /** Number of tokens in the KV cache. */
  get position(): number {
    return this.len;
  }

  /** Empty the KV cache. */
  reset(): void {
    this.len = 0;
    this.evicted = 0;
    this.capacity = 0;
    this.keys = [];
    this.values = [];
  }

  /**
   * Run the tokens after the cached ones; returns the logits of the last one ([vocab]).
   * `embeds[i]`, when given, replaces token i's embedding (an image token's vision features).
   */
  forward(tokens: number[], embeds?: readonly (Float32Array | null)[]): Float32Array {
    if (tokens.length === 0) throw new RangeError('forward: no tokens');
    tokens.forEach((t, i) => this.step(t, embeds?.[i] ?? null));
    return this.s.logits.slice();
  }

  /** Like forward, but returns the logits of every token. */
  forwardAll(tokens: number[]): Float32Array[] {
    return tokens.map((t) => {
      this.step(t);
      return this.s.logits.slice();
    });
  }

  /** Greedy decoding from scratch (resets the cache): up to maxNewTokens new ids, an EOS included. */
  greedy(promptIds: number[], maxNewTokens: number, eosIds: number[] = this.config.eosTokenIds, embeds?: readonly (Float32Array | null)[]): number[] {
    this.reset();
    const out: number[] = [];
    if (maxNewTokens <= 0) return out;
    let logits = this.forward(promptIds, embeds);
    for (;;) {
      const next = argmax(logits);
      out.push(next);
      if (eosIds.includes(next) || out.length >= maxNewTokens) return out;
      logits = this.forward([next]);
    }
  }

  /**
   * Keeps only the cached tokens at `slots` (ascending, the same for every
   * layer and head), as a press's compaction does: kept keys keep their
   * rotation, and later tokens keep counting positions from the full length.
   */
  evict(slots: number[]): void {
    const kvDim = this.config.numKvHeads * this.config.headDim;
    slots.forEach((t, j) => {
      if (!Number.isInteger(t) || t < j || t >= this.len || (j > 0 && t <= slots[j - 1])) throw new RangeError(`evict: slots must be ascending cache indexes < ${this.len}`);
      for (let l = 0; l < this.config.numLayers; l++) {
        this.keys[l].copyWithin(j * kvDim, t * kvDim, (t + 1) * kvDim);
        this.values[l].copyWithin(j * kvDim, t * kvDim, (t + 1) * kvDim);
      }
    });
    this.evicted += this.len - slots.length;
    this.len = slots.length;
  }

  /** Copies of layer's cached K and V (after RoPE; f16-rounded with kvDtype 'f16'), [position, kvHeads*headDim]. */
  cachedKV(layer: number): { k: Float32Array; v: Float32Array } {
    const n = this.len * this.config.numKvHeads * this.config.headDim;
    return { k: this.keys[layer].slice(0, n), v: this.values[layer].slice(0, n) };
  }

  // -------------------------------------------------------------------------------------------

  /** One token at position this.len through every layer; leaves its logits in s.logits. */
  private step(token: number, embedding: Float32Array | null = null): void {
    const c = this.config;
    const { s, w } = this;
    const slot = this.len;
    const pos = slot + this.evicted;
    if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) throw new RangeError(`token id ${token} out of range [0, ${c.vocabSize})`);
    if (pos >= this.maxPositions) throw new RangeError(`position ${pos} exceeds max_position_embeddings ${this.maxPositions}`);
    this.ensureCapacity(slot + 1);
    const h = c.hiddenSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const { cos, sin } = this.ropeAt(pos);

    if (embedding && embedding.length !== h) throw new RangeError(`embedding has ${embedding.length} values, the model's hidden size is ${h}`);
    s.x.set(embedding ?? w.embed.subarray(token * h, token * h + h));
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l];
      // Attention: x += o_proj(attn(rope(q), rope(k), v))
      rmsnorm(s.xb, s.x, lw.inputNorm, c.rmsNormEps);
      matvec(s.q, lw.wq, s.xb, q, h, lw.bq);
      matvec(s.k, lw.wk, s.xb, kv, h, lw.bk);
      matvec(s.v, lw.wv, s.xb, kv, h, lw.bv);
      rope(s.q, c.numHeads, c.headDim, cos, sin);
      rope(s.k, c.numKvHeads, c.headDim, cos, sin);
      this.appendKV(l, slot);
      this.attention(l, slot + 1);
      matvec(s.xb, lw.wo, s.att, h, q, null);
      addInPlace(s.x, s.xb);
      // MLP: x += down(silu(gate(x')) * up(x'))
      rmsnorm(s.xb, s.x, lw.postNorm, c.rmsNormEps);
      matvec(s.hb, lw.wGate, s.xb, c.intermediateSize, h, null);
      matvec(s.hb2, lw.wUp, s.xb, c.intermediateSize, h, null);
      swiglu(s.hb, s.hb2);
      matvec(s.xb, lw.wDown, s.hb, h, c.intermediateSize, null);
      addInPlace(s.x, s.xb);
    }
    rmsnorm(s.xb, s.x, w.finalNorm, c.rmsNormEps);
    matvec(s.logits, w.lmHead, s.xb, c.vocabSize, h, null);
    this.len = slot + 1;
  }

  /** GQA attention of every query head over cache positions [0, n) into s.att. */
  private attention(layer: number, n: number): void {
    const { numHeads, numKvHeads, headDim: hd } = this.config;
    const kvDim = numKvHeads * hd;
    const group = numHeads / numKvHeads;
    const K = this.keys[layer];
    const V = this.values[layer];
    const { q, att, scores } = this.s;
    const scale = fr(1 / Math.sqrt(hd));
    for (let head = 0; head < numHeads; head++) {
      const qo = head * hd;
      const ko = Math.floor(head / group) * hd;
      let max = -Infinity;
      const visible = (t: number) => !this.window || t < this.window.sinks || t > n - 1 - this.window.recent; // slot t = position t here
      for (let t = 0; t < n; t++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qo + d] * K[t * kvDim + ko + d];
        scores[t] = fr(dot) * scale;
        if (visible(t) && scores[t] > max) max = scores[t];
      }
      let sum = 0;
      for (let t = 0; t < n; t++) {
        scores[t] = visible(t) ? Math.exp(fr(scores[t] - max)) : 0;
        sum += scores[t];
      }
      const total = fr(sum);
      for (let t = 0; t < n; t++) scores[t] = scores[t] / total;
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let t = 0; t < n; t++) acc += scores[t] * V[t * kvDim + ko + d];
        att[qo + d] = acc;
      }
    }
  }

  private appendKV(layer: number, pos: number): void {
    const { k, v } = this.s;
    const off = pos * k.length;
    if (this.kvF16) {
      for (let i = 0; i < k.length; i++) {
        this.keys[layer][off + i] = roundF16(k[i]);
        this.values[layer][off + i] = roundF16(v[i]);
      }
    } else {
      this.keys[layer].set(k, off);
      this.values[layer].set(v, off);
    }
  }

  private ropeAt(pos: number): { cos: Float32Array; sin: Float32Array } {
    const cos = new Float32Array(this.inv.length);
    const sin = new Float32Array(this.inv.length);
    for (let i = 0; i < this.inv.length; i++) {
      cos[i] = Math.cos(pos * this.inv[i]);
      sin[i] = Math.sin(pos * this.inv[i]);
    }
    return { cos, sin };
  }

  /** Grow the contiguous cache (doubling) so it holds n positions. */
  private ensureCapacity(n: number): void {
    if (n <= this.capacity) return;
    const c = this.config;
    const cap = Math.min(this.maxPositions, Math.max(64, this.capacity * 2, n));
    const kvDim = c.numKvHeads * c.headDim;
    const grow = (old: Float32Array | undefined) => {
      const a = new Float32Array(cap * kvDim);
      if (old) a.set(old.subarray(0, this.len * kvDim));
      return a;
    };
    this.keys = Array.from({ length: c.numLayers }, (_, l) => grow(this.keys[l]));
    this.values = Array.from({ length: c.numLayers }, (_, l) => grow(this.values[l]));
    this.s.scores = new Float32Array(cap);
    this.capacity = cap;
  }
}

// ---------------------------------------------------------------------------------------------
// Ops (out-of-place results are stored into Float32Arrays, which rounds them to f32)
// ---------------------------------------------------------------------------------------------

/** out[i] = (x[i] · 1/sqrt(mean(x²) + eps)) · w[i]. */
function rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = fr(1 / Math.sqrt(fr(fr(ss / x.length) + fr(eps))));
  for (let i = 0; i < x.length; i++) out[i] = fr(x[i] * inv) * w[i];
}

/** out[r] = Σ_c W[r, c] x[c] (+ b[r]); W row-major [rows, cols]. */
function matvec(out: Float32Array, W: Float32Array, x: Float32Array, rows: number, cols: number, b: Float32Array | null): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += W[o + c] * x[c];
    out[r] = b ? fr(acc) + b[r] : acc;
  }
}

/** Rotate-half RoPE on each head of v: (a, b) → (a·cos − b·sin, b·cos + a·sin), b = a's partner half a head later. */
function rope(v: Float32Array, heads: number, hd: number, cos: Float32Array, sin: Float32Array): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const a = v[o + i];
      const b = v[o + i + half];
      v[o + i] = fr(a * cos[i]) - fr(b * sin[i]);
      v[o + i + half] = fr(b * cos[i]) + fr(a * sin[i]);
    }
  }
}

/** gate[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^−g). */
function swiglu(gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    gate[i] = fr(g / fr(1 + fr(Math.exp(-g)))) * up[i];
  }
}

function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i] + y[i];
}

/** Check presence and shape of every tensor the config needs, and take f32 copies. */
function gatherWeights(config: ModelConfig, weights: Map<string, CpuTensor>): ModelWeights {
  for (const [name, shape] of expectedTensorShapes(config)) {
    const t = weights.get(name);
    if (!t) throw new Error(`ReferenceModel: missing tensor "${name}" (expected shape [${shape.join(', ')}])`);
    if (t.shape.join() !== shape.join()) {
      throw new Error(`ReferenceModel: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
  }
  const get = (name: string) => toF32(weights.get(name)!);
  const opt = (name: string) => (config.attentionBias ? get(name) : null);
  const embed = get(EMBED);
  return {
    embed,
    layers: Array.from({ length: config.numLayers }, (_, i) => ({
      inputNorm: get(layerTensor(i, 'input_layernorm.weight')),
      wq: get(layerTensor(i, 'self_attn.q_proj.weight')),
      wk: get(layerTensor(i, 'self_attn.k_proj.weight')),
      wv: get(layerTensor(i, 'self_attn.v_proj.weight')),
      bq: opt(layerTensor(i, 'self_attn.q_proj.bias')),
      bk: opt(layerTensor(i, 'self_attn.k_proj.bias')),
      bv: opt(layerTensor(i, 'self_attn.v_proj.bias')),
      wo: get(layerTensor(i, 'self_attn.o_proj.weight')),
      postNorm: get(layerTensor(i, 'post_attention_layernorm.weight')),
      wGate: get(layerTensor(i, 'mlp.gate_proj.weight')),
      wUp: get(layerTensor(i, 'mlp.up_proj.weight')),
      wDown: get(layerTensor(i, 'mlp.down_proj.weight')),
    })),
    finalNorm: get(FINAL_NORM),
    lmHead: config.tieWordEmbeddings ? embed : get(LM_HEAD),
  };
}
