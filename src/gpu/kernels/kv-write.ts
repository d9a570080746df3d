import sourceRaw from '../../../shaders/kv_write.wgsl?raw';
import kvLayout from '../../../shaders/kv_layout.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertKvGeometry, type KvGeometry, kvPageBytes, kvRowWords } from '../kv-layout.ts';
import { assertFits, assertPositiveInt } from './guards.ts';

// every kernel that addresses the pool shares its layout function
const source = sourceRaw + kvLayout;

export interface KvWriteArgs extends KvGeometry {
  /** f32 rows; K of token r, kv head h, dim d at src[r*rowStride + kOffset + h*headDim + d], V at vOffset. */
  src: GPUBuffer;
  /** u32 per token: page*pageSize + offset. Slots past the pool are skipped. */
  slots: GPUBuffer;
  /** One layer's pool buffer (KvPool.layer(l)). */
  pool: GPUBuffer;
  n: number;
  rowStride: number;
  kOffset: number;
  vOffset: number;
}

const WG = 64;

/** Writes K and V of `n` new tokens into their slots of the paged pool. */
export function encodeKvWrite(rec: CommandRecorder, a: KvWriteArgs): void {
  const kernel = 'kv_write';
  assertKvGeometry(kernel, a);
  if (a.n === 0) return;
  assertPositiveInt(kernel, { n: a.n, rowStride: a.rowStride });
  for (const [name, v] of Object.entries({ kOffset: a.kOffset, vOffset: a.vOffset })) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${kernel}: ${name} must be a non-negative integer, got ${v}`);
  }
  const rowSpan = a.numKvHeads * a.headDim;
  const srcElems = (a.n - 1) * a.rowStride + Math.max(a.kOffset, a.vOffset) + rowSpan;
  assertFits(kernel, { src: a.src }, srcElems * 4);
  assertFits(kernel, { slots: a.slots }, a.n * 4);
  const pageBytes = kvPageBytes(a);
  assertFits(kernel, { pool: a.pool }, pageBytes);
  const numPages = Math.floor(a.pool.size / pageBytes);
  const rowWords = kvRowWords(a);

  const pipeline = rec.gpu.pipelines.get(kernel, source, { WG, KV_F16: a.dtype === 'f16' ? 1 : 0 });
  const u = new Uniforms().u32(a.n).u32(a.numKvHeads).u32(rowWords).u32(a.rowStride).u32(a.kOffset).u32(a.vOffset).u32(a.pageSize).u32(numPages);
  rec.dispatch(pipeline, [a.src, a.slots, a.pool], u, Math.ceil((a.n * a.numKvHeads * rowWords) / WG));
}
