import type { Gpu } from '../gpu/context.ts';
import { storageBuffer, uploadBuffer, writeBuffer } from '../gpu/buffers.ts';
import { CommandRecorder, type SubmitPhases } from '../gpu/recorder.ts';
import { EncodeCache } from '../gpu/encode-cache.ts';
import type { GpuTimer } from '../gpu/timestamps.ts';
import { encodeGather } from '../gpu/kernels/embedding.ts';
import { encodeMatmul, type MatmulDtype } from '../gpu/kernels/matmul.ts';
import { encodeRmsNorm } from '../gpu/kernels/rmsnorm.ts';
import { encodeRope, ropeCosSinTable, ropeInvFreq } from '../gpu/kernels/rope.ts';
import { encodeSiluMul } from '../gpu/kernels/silu-mul.ts';
import { encodeKvWrite } from '../gpu/kernels/kv-write.ts';
import { encodeAttentionPaged } from '../gpu/kernels/attention-paged.ts';
import { encodeSample, packSamplingParams, type SamplingParams } from '../gpu/kernels/sample.ts';
import type { ModelConfig } from './config.ts';
import type { CpuTensor } from './weights-cpu.ts';
import { destroyWeights, uploadWeights, type ModelWeights } from './gpu-weights.ts';

/**
 * The Llama / Qwen2 forward pass on the GPU, over a paged KV cache it is
 * handed (the model owns no cache and knows nothing of requests): one call
 * of `step` runs any mix of rows — a prefill chunk of one sequence, one
 * decode token of each of many — and returns one sampled token per logit
 * row. Everything from embedding to sampling is one submit.
 */

/** Where the K/V pages live: one buffer per layer, laid out as src/kv/kv-pool.ts describes. */
export interface KvCacheView {
  layers: readonly GPUBuffer[];
  pageSize: number;
  dtype: 'f32' | 'f16';
}

export interface StepInput {
  tokens: Uint32Array; //      [n] token ids
  positions: Uint32Array; //   [n] RoPE position of each token in its sequence
  slots: Uint32Array; //       [n] pool slot (page * pageSize + offset) that receives the token's K/V
  /** [n, 2]: offset in blockTables of the row's sequence, and the row's own slot index in that
   * sequence (it attends to slots 0..that). Equal to the position unless a press evicted tokens. */
  rowInfo: Uint32Array;
  /** Optional u32 pairs per row [A, B): key slots the row does not attend to (a rolling window); absent = none. */
  rowMask?: Uint32Array;
  blockTables: Uint32Array; // concatenated page lists of the sequences in the step
  logitRows: Uint32Array; //   [s] rows whose next token is sampled
  sampling: { params: SamplingParams; step: number }[]; // [s]
  /** For each entry, copy these rows' q|k|v (after RoPE) of every layer into `buffers[layer]`
   * (f32 [rows, qkvDim]): the observation windows that attention-based KV presses score with. */
  capture?: { rows: Uint32Array; buffers: readonly GPUBuffer[] }[];
  /** Rows whose input embedding comes from `source` (f32 [.., hidden], e.g. vision features)
   * instead of the token table: rows [row, row+count) ← source rows [sourceRow, sourceRow+count). */
  embeds?: EmbedRows[];
}

export interface EmbedRows {
  row: number;
  count: number;
  source: GPUBuffer;
  sourceRow: number;
}

export interface StepOutput {
  tokens: Uint32Array; //      [s] sampled ids
  logits?: Float32Array; //    [s, vocab] when asked for
}

export interface StepOptions {
  returnLogits?: boolean;
  timer?: GpuTimer;
  /** Filled in with where the step's host time went (bench/suites/batch.ts). */
  phases?: StepPhases;
}

/** One step's host time by phase, ms: input upload, recording the dispatches, encoding + submit, then the wait until the sampled ids are read back (validation and the GPU's work included). */
export interface StepPhases extends SubmitPhases {
  upload: number;
  record: number;
}

export interface RunStateSizes {
  maxRows: number; //          most tokens in one step (prefill chunk + decode rows)
  maxLogitRows: number; //     most sequences sampled in one step
  maxBlockTableEntries: number;
  /** Positions the RoPE table covers (default the model's context; a rolling window may go past it). */
  maxPositions: number;
}

/** Activation buffers, allocated once for the largest step. */
interface RunState {
  x: GPUBuffer; //        f32 [maxRows, hidden]      residual stream
  h: GPUBuffer; //        f32 [maxRows, hidden]      normed activations
  qkv: GPUBuffer; //      f32 [maxRows, (H + 2*Hkv) * headDim]
  attn: GPUBuffer; //     f32 [maxRows, H * headDim]
  gateUp: GPUBuffer; //   f32 [maxRows, 2 * intermediate]
  act: GPUBuffer; //      f32 [maxRows, intermediate]
  tokens: GPUBuffer; //   u32 [maxRows]
  positions: GPUBuffer; // u32 [maxRows]
  slots: GPUBuffer; //    u32 [maxRows]
  rowInfo: GPUBuffer; //  u32 [maxRows, 2]           (block table offset, position)
  rowMask: GPUBuffer; //  u32 [maxRows, 2]           masked key slots [A, B) of each row (rolling windows)
  blockTables: GPUBuffer; // u32 [maxBlockTableEntries]
  logitRows: GPUBuffer; // u32 [maxLogitRows]
  last: GPUBuffer; //     f32 [maxLogitRows, hidden] hidden states of the logit rows
  lastNorm: GPUBuffer; // f32 [maxLogitRows, hidden]
  logits: GPUBuffer; //   f32 [maxLogitRows, vocab]
  params: GPUBuffer; //   sampling params [maxLogitRows]
  sampled: GPUBuffer; //  u32 [maxLogitRows]
  readback: GPUBuffer; // MAP_READ copy of `sampled`
  ropeTable: GPUBuffer; // f32 [2, sizes.maxPositions, headDim / 2]  cos then sin
}

export class LlamaModel {
  readonly sizes: RunStateSizes;
  private state: RunState;
  /** The forward step's uniform buffer and bind groups, reused from step to step (null: created per step, the batch benchmark's baseline). */
  private readonly encodeCache: EncodeCache | null;
  /** The step being encoded has a rowMask (some row runs in a rolling window). */
  private masked = false;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    sizes: RunStateSizes,
    reuseEncoding: boolean,
  ) {
    this.sizes = sizes;
    this.state = allocateRunState(gpu, config, sizes);
    this.encodeCache = reuseEncoding ? new EncodeCache(gpu, 'forward') : null;
  }

  /**
   * `reuseEncoding: false` creates the step's uniform buffer and bind groups
   * every step and waits for the GPU before mapping the sampled ids — the
   * path before issue 17's overhead cut, kept as the batch benchmark's
   * baseline; outputs are the same either way.
   */
  static create(gpu: Gpu, config: ModelConfig, cpuWeights: Map<string, CpuTensor>, opts: { weightDtype?: MatmulDtype; reuseEncoding?: boolean } & Partial<RunStateSizes> = {}): LlamaModel {
    const weights = uploadWeights(gpu, config, cpuWeights, opts.weightDtype ?? 'f32');
    const sizes = {
      maxRows: opts.maxRows ?? 64,
      maxLogitRows: opts.maxLogitRows ?? 16,
      maxBlockTableEntries: opts.maxBlockTableEntries ?? 4096,
      maxPositions: opts.maxPositions ?? config.maxPositions,
    };
    return new LlamaModel(gpu, config, weights, sizes, opts.reuseEncoding ?? true);
  }

  /** Runs one forward step and samples the logit rows. */
  async step(input: StepInput, kv: KvCacheView, opts: StepOptions = {}): Promise<StepOutput> {
    const ph = opts.phases;
    const t0 = performance.now();
    this.upload(input); // validates first: nothing is recorded for a step that would be refused
    const t1 = performance.now();
    const rec = new CommandRecorder(this.gpu, 'forward', opts.timer, this.encodeCache ?? undefined);
    // capture windows are rare (once per compressed prompt): small id buffers per step are fine
    const captureIds = (input.capture ?? []).map((c) => uploadBuffer(this.gpu, 'act:capture_rows', c.rows));
    this.encodeForward(rec, input.tokens.length, input.logitRows.length, kv, input.capture, captureIds, input.embeds ?? []);
    const freeCaptureIds = () => captureIds.forEach((b) => this.gpu.destroyBuffer(b));
    const s = input.logitRows.length;
    const st = this.state;
    if (ph) Object.assign(ph, { upload: t1 - t0, record: performance.now() - t1 });
    const sp: SubmitPhases = { encode: 0, wait: 0 };
    if (s === 0) {
      await rec.submit({ phases: sp }).finally(freeCaptureIds);
      if (ph) Object.assign(ph, sp);
      return { tokens: new Uint32Array(0) };
    }
    rec.copy(st.sampled, 0, st.readback, 0, s * 4);
    let logitsCopy: GPUBuffer | null = null;
    if (opts.returnLogits) {
      logitsCopy = this.gpu.device.createBuffer({ size: s * this.config.vocabSize * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      rec.copy(st.logits, 0, logitsCopy, 0, logitsCopy.size);
    }
    const submitted = rec.submit({ phases: sp, awaitGpu: !this.encodeCache }).finally(freeCaptureIds);
    const t2 = performance.now();
    const tokens = await this.readSampled(submitted, s).catch((e: unknown) => {
      logitsCopy?.destroy();
      throw e;
    });
    if (ph) Object.assign(ph, { encode: sp.encode, wait: performance.now() - t2 });
    const out: StepOutput = { tokens };
    if (logitsCopy) {
      await logitsCopy.mapAsync(GPUMapMode.READ);
      out.logits = new Float32Array(logitsCopy.getMappedRange().slice(0));
      logitsCopy.destroy();
    }
    return out;
  }

  /**
   * The sampled ids once `submitted` has written them. With reused encoding
   * the map is requested at once, so the submit's validation and the map's
   * wait for the GPU overlap (one round trip, not two); without, the submit
   * has already waited for the GPU (the baseline path).
   */
  private async readSampled(submitted: Promise<void>, s: number): Promise<Uint32Array> {
    const readback = this.state.readback;
    if (!this.encodeCache) await submitted;
    const [sub, map] = await Promise.allSettled([submitted, readback.mapAsync(GPUMapMode.READ, 0, s * 4)]);
    if (sub.status === 'rejected') {
      if (map.status === 'fulfilled') readback.unmap();
      throw sub.reason;
    }
    if (map.status === 'rejected') throw map.reason;
    const tokens = new Uint32Array(readback.getMappedRange(0, s * 4).slice(0));
    readback.unmap();
    return tokens;
  }

  destroy(): void {
    destroyWeights(this.gpu, this.weights);
    this.encodeCache?.destroy();
    for (const b of Object.values(this.state)) this.gpu.destroyBuffer(b);
  }

  // ---------------------------------------------------------------- forward

  private encodeForward(rec: CommandRecorder, n: number, s: number, kv: KvCacheView, capture: StepInput['capture'], captureIds: GPUBuffer[], embeds: EmbedRows[]): void {
    const c = this.config;
    const st = this.state;
    const w = this.weights;
    const D = c.hiddenSize;
    const hd = c.headDim;
    const qDim = c.numHeads * hd;
    const qkvDim = (c.numHeads + 2 * c.numKvHeads) * hd;
    const F = c.intermediateSize;
    const mat = (b: GPUBuffer) => ({ w: b, dtype: w.matrixDtype, ...(w.scales.has(b) ? { scales: w.scales.get(b)! } : {}) });

    encodeGather(rec, { table: w.embed, dtype: w.dtype, ids: st.tokens, out: st.x, rows: n, dim: D, tableRows: c.vocabSize });
    for (const e of embeds) rec.copy(e.source, e.sourceRow * D * 4, st.x, e.row * D * 4, e.count * D * 4);
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l];
      // attention block: x += o(attn(rope(qkv(norm(x)))))
      encodeRmsNorm(rec, { x: st.x, weight: lw.inputNorm, out: st.h, rows: n, dim: D, eps: c.rmsNormEps });
      encodeMatmul(rec, { x: st.h, ...mat(lw.qkv), ...(lw.qkvBias ? { bias: lw.qkvBias } : {}), out: st.qkv, m: n, n: qkvDim, k: D });
      const rope = { x: st.qkv, positions: st.positions, cosSin: st.ropeTable, n, headDim: hd, rowStride: qkvDim, maxPositions: this.sizes.maxPositions };
      encodeRope(rec, { ...rope, numHeads: c.numHeads, headOffset: 0 });
      encodeRope(rec, { ...rope, numHeads: c.numKvHeads, headOffset: qDim });
      capture?.forEach((c, i) => {
        encodeGather(rec, { table: st.qkv, dtype: 'f32', ids: captureIds[i], out: c.buffers[l], rows: c.rows.length, dim: qkvDim, tableRows: n });
      });
      encodeKvWrite(rec, {
        src: st.qkv, slots: st.slots, pool: kv.layers[l], n, numKvHeads: c.numKvHeads, headDim: hd,
        rowStride: qkvDim, kOffset: qDim, vOffset: qDim + c.numKvHeads * hd, pageSize: kv.pageSize, dtype: kv.dtype,
      });
      encodeAttentionPaged(rec, {
        q: st.qkv, qRowStride: qkvDim, qOffset: 0, blockTables: st.blockTables, rowInfo: st.rowInfo, pool: kv.layers[l],
        out: st.attn, nq: n, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: hd, pageSize: kv.pageSize, dtype: kv.dtype,
        ...(this.masked ? { rowMask: st.rowMask } : {}),
      });
      encodeMatmul(rec, { x: st.attn, ...mat(lw.o), out: st.x, m: n, n: D, k: qDim, accumulate: true });
      // MLP block: x += down(silu(gate(norm(x))) * up(norm(x)))
      encodeRmsNorm(rec, { x: st.x, weight: lw.postNorm, out: st.h, rows: n, dim: D, eps: c.rmsNormEps });
      encodeMatmul(rec, { x: st.h, ...mat(lw.gateUp), out: st.gateUp, m: n, n: 2 * F, k: D });
      encodeSiluMul(rec, { gateUp: st.gateUp, out: st.act, n, f: F });
      encodeMatmul(rec, { x: st.act, ...mat(lw.down), out: st.x, m: n, n: D, k: F, accumulate: true });
    }
    if (s === 0) return; // a prefill chunk that is not the prompt's last
    // only the rows that are sampled go through the final norm and the head
    encodeGather(rec, { table: st.x, dtype: 'f32', ids: st.logitRows, out: st.last, rows: s, dim: D, tableRows: n });
    encodeRmsNorm(rec, { x: st.last, weight: w.finalNorm, out: st.lastNorm, rows: s, dim: D, eps: c.rmsNormEps });
    encodeMatmul(rec, { x: st.lastNorm, w: w.lmHead, dtype: w.dtype, out: st.logits, m: s, n: c.vocabSize, k: D });
    encodeSample(rec, { logits: st.logits, params: st.params, out: st.sampled, rows: s, vocab: c.vocabSize });
  }

  private upload(input: StepInput): void {
    const n = input.tokens.length;
    const s = input.logitRows.length;
    const { maxRows, maxLogitRows, maxBlockTableEntries } = this.sizes;
    if (n === 0) throw new RangeError('step: no tokens to run');
    if (n > maxRows) throw new RangeError(`step: ${n} tokens exceed the run state's maxRows (${maxRows}); split the step`);
    if (s > maxLogitRows) throw new RangeError(`step: ${s} logit rows exceed maxLogitRows (${maxLogitRows})`);
    if (input.sampling.length !== s) throw new RangeError(`step: ${input.sampling.length} sampling entries for ${s} logit rows`);
    for (const r of input.logitRows) if (r >= n) throw new RangeError(`step: logit row ${r} is not one of the ${n} rows`);
    if (input.blockTables.length > maxBlockTableEntries) {
      throw new RangeError(`step: ${input.blockTables.length} block-table entries exceed maxBlockTableEntries (${maxBlockTableEntries})`);
    }
    for (const [name, a, per] of [['positions', input.positions, 1], ['slots', input.slots, 1], ['rowInfo', input.rowInfo, 2]] as const) {
      if (a.length !== per * n) throw new RangeError(`step: ${name} has ${a.length} entries for ${n} tokens`);
    }
    for (let i = 0; i < n; i++) {
      if (input.positions[i] >= this.sizes.maxPositions) {
        throw new RangeError(`step: position ${input.positions[i]} is beyond the model's context (${this.sizes.maxPositions})`);
      }
    }
    const st = this.state;
    const gpu = this.gpu;
    writeBuffer(gpu, st.tokens, input.tokens);
    writeBuffer(gpu, st.positions, input.positions);
    writeBuffer(gpu, st.slots, input.slots);
    writeBuffer(gpu, st.rowInfo, input.rowInfo);
    if (input.rowMask) {
      if (input.rowMask.length !== 2 * n) throw new RangeError(`step: rowMask has ${input.rowMask.length} entries for ${n} tokens (2 per row)`);
      writeBuffer(gpu, st.rowMask, input.rowMask);
    }
    this.masked = input.rowMask !== undefined;
    writeBuffer(gpu, st.blockTables, input.blockTables);
    for (const e of input.embeds ?? []) {
      const end = (e.sourceRow + e.count) * this.config.hiddenSize * 4;
      if (e.count <= 0 || e.row < 0 || e.row + e.count > n || e.sourceRow < 0 || end > e.source.size) {
        throw new RangeError(`step: embedding rows [${e.row}, ${e.row + e.count}) from source rows at ${e.sourceRow} do not fit the step (${n} rows) or the source (${e.source.size} bytes)`);
      }
    }
    for (const { rows, buffers } of input.capture ?? []) {
      if (buffers.length !== this.config.numLayers) throw new RangeError(`step: capture needs one buffer per layer (${this.config.numLayers}), got ${buffers.length}`);
      for (const r of rows) if (r >= n) throw new RangeError(`step: capture row ${r} is not one of the ${n} rows`);
    }
    if (s > 0) {
      writeBuffer(gpu, st.logitRows, input.logitRows);
      writeBuffer(gpu, st.params, new Uint8Array(packSamplingParams(input.sampling)));
    }
  }
}

function allocateRunState(gpu: Gpu, c: ModelConfig, z: RunStateSizes): RunState {
  const f32 = (label: string, count: number) => storageBuffer(gpu, `act:${label}`, count * 4);
  const { maxRows: R, maxLogitRows: S } = z;
  const qkvDim = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  const invFreq = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
  return {
    x: f32('x', R * c.hiddenSize),
    h: f32('h', R * c.hiddenSize),
    qkv: f32('qkv', R * qkvDim),
    attn: f32('attn', R * c.numHeads * c.headDim),
    gateUp: f32('gate_up', R * 2 * c.intermediateSize),
    act: f32('act', R * c.intermediateSize),
    tokens: f32('tokens', R),
    positions: f32('positions', R),
    slots: f32('slots', R),
    rowInfo: f32('row_info', 2 * R),
    rowMask: f32('row_mask', 2 * R),
    blockTables: f32('block_tables', z.maxBlockTableEntries),
    logitRows: f32('logit_rows', S),
    last: f32('last', S * c.hiddenSize),
    lastNorm: f32('last_norm', S * c.hiddenSize),
    logits: f32('logits', S * c.vocabSize),
    params: storageBuffer(gpu, 'act:sampling', packSamplingParams(Array.from({ length: S }, () => ({ params: { temperature: 0, topK: 0, topP: 1, seed: 0 }, step: 0 }))).byteLength),
    sampled: f32('sampled', S),
    readback: gpu.createBuffer('act:readback', S * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST),
    ropeTable: uploadBuffer(gpu, 'act:rope', ropeCosSinTable(invFreq, z.maxPositions)),
  };
}
