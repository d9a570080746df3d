import { it } from 'vitest';
import { readFileSync } from 'node:fs';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';
import { encodeAttentionPaged, encodeAttentionPagedSplit, attentionSplitScratchBytes } from './attention-paged.ts';

it('bench', async () => {
  const gpu = await testGpu();
  const r = rng(1);
  const H = 9, Hkv = 3, D = 64, ps = 16;
  for (const [label, nq, ctxOf] of [['decode4x1024', 4, (i: number) => 1024], ['decode16x512', 16, (i: number) => 512], ['prefill128', 128, (i: number) => i + 1]] as const) {
    const maxCtx = 1024;
    const pages = maxCtx / ps;
    const pool = uploadBuffer(gpu, 'pool', randomF32(pages * 2 * Hkv * ps * D, r));
    const tables = uploadBuffer(gpu, 'tables', Uint32Array.from({ length: pages }, (_, i) => (i * 7) % pages));
    const rowInfo = uploadBuffer(gpu, 'ri', Uint32Array.from({ length: 2 * nq }, (_, i) => (i % 2 ? ctxOf((i - 1) / 2) - 1 : 0)));
    const q = uploadBuffer(gpu, 'q', randomF32(nq * H * D, r));
    const out = storageBuffer(gpu, 'out', nq * H * D * 4);
    const maxContext = Math.max(...Array.from({ length: nq }, (_, i) => ctxOf(i)));
    const partials = storageBuffer(gpu, 'partials', attentionSplitScratchBytes(nq, H, D, maxContext));
    const args = { q, qRowStride: H * D, qOffset: 0, blockTables: tables, rowInfo, pool, out, nq, numHeads: H, numKvHeads: Hkv, headDim: D, pageSize: ps, dtype: 'f32' as const };
    const v1 = readFileSync('/tmp/var/v1.wgsl', 'utf8');
    const encoders: Record<string, (rec: CommandRecorder) => void> = {
      v1: (rec) => rec.dispatch(gpu.pipelines.get('v1', v1, { WG: 32, KV_F16: 0 }), [q, tables, rowInfo, pool, out], new Uniforms().u32(nq).u32(H).u32(H / Hkv).u32(Hkv).u32(D / 2).u32(ps).u32(H * D).u32(0).f32(0.125), Math.ceil((nq * H) / 32)),
      main: (rec) => encodeAttentionPaged(rec, args),
      split: (rec) => encodeAttentionPagedSplit(rec, { ...args, maxContext, partials }),
    };
    for (const [name, enc] of Object.entries(encoders)) {
      const run = async (reps: number) => { const rec = new CommandRecorder(gpu); for (let i = 0; i < reps; i++) enc(rec); await rec.submit(); };
      await run(1);
      let cpu = 1e9, wall = 1e9; for (let k = 0; k < 3; k++) { const c0 = process.cpuUsage(); const t0 = performance.now(); await run(2); wall = Math.min(wall, (performance.now() - t0) / 2); const c = process.cpuUsage(c0); cpu = Math.min(cpu, (c.user + c.system) / 2000); }
      console.log(`${label} ${name}: ${cpu.toFixed(1)} ms cpu ${wall.toFixed(1)} ms wall`);
    }
  }
});
