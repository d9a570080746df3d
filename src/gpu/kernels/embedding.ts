import source from '../../../shaders/embedding.wgsl?raw';
import type { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { assertFits, assertPositiveInt } from './guards.ts';
import type { WeightDtype } from './matmul.ts';

export interface GatherArgs {
  /** [tableRows, dim], f32 or f16 packed two per u32 along dim. */
  table: GPUBuffer;
  dtype: WeightDtype;
  /** [rows] u32 row indices into the table; an index >= tableRows gives zeros. */
  ids: GPUBuffer;
  /** [rows, dim] f32. */
  out: GPUBuffer;
  rows: number;
  dim: number;
  tableRows: number;
}

const WG = 256;

/** out[r, :] = table[ids[r], :] (f32 out): token embeddings, or picking hidden rows. */
export function encodeGather(rec: CommandRecorder, a: GatherArgs): void {
  const { table, dtype, ids, out, rows, dim, tableRows } = a;
  assertPositiveInt('gather', { rows, dim, tableRows });
  if (dtype === 'f16' && dim % 2 !== 0) throw new RangeError(`gather: an f16 table needs an even dim (pairs along dim), got dim=${dim}`);
  if (out === table || out === ids) throw new RangeError('gather: out must not be the table or the ids (WebGPU forbids aliasing a writable binding)');
  assertFits('gather', { table }, tableRows * dim * (dtype === 'f16' ? 2 : 4));
  assertFits('gather', { ids }, rows * 4);
  assertFits('gather', { out }, rows * dim * 4);
  const f16 = dtype === 'f16';
  const pipeline = rec.gpu.pipelines.get('embedding', source, { WG }, f16 ? 'main_f16' : 'main');
  const threads = f16 ? (rows * dim) / 2 : rows * dim;
  rec.dispatch(pipeline, [table, ids, out], new Uniforms().u32(rows).u32(dim).u32(tableRows), Math.ceil(threads / WG));
}
