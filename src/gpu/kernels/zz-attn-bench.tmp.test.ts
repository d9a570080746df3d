import { it } from 'vitest';
import { readFileSync } from 'node:fs';
import { testGpu, rng, randomF32 } from '../../../test/gpu.ts';
import { uploadBuffer, storageBuffer } from '../buffers.ts';
import { CommandRecorder } from '../recorder.ts';
import { Uniforms } from '../uniforms.ts';

it('bench', async () => {
  const gpu = await testGpu();
  const r = rng(1);
  const H = 9, Hkv = 3, D = 64, ps = 16;
  const variants = (process.env.VARIANTS ?? '').split(',');
  for (const [label, nq, ctxOf] of [['decode16x512', 16, (i: number) => 512], ['prefill128', 128, (i: number) => i + 1]] as const) {
    const maxCtx = 1024;
    const pages = maxCtx / ps;
    const pool = uploadBuffer(gpu, 'pool', randomF32(pages * 2 * Hkv * ps * D, r));
    const tables = uploadBuffer(gpu, 'tables', Uint32Array.from({ length: pages }, (_, i) => (i * 7) % pages));
    const rowInfo = uploadBuffer(gpu, 'ri', Uint32Array.from({ length: 2 * nq }, (_, i) => (i % 2 ? ctxOf((i - 1) / 2) - 1 : 0)));
    const q = uploadBuffer(gpu, 'q', randomF32(nq * H * D, r));
    const out = storageBuffer(gpu, 'out', nq * H * D * 4);
    for (const v of variants) {
      const WG = 32;
      const source = readFileSync(v, 'utf8');
      const pipe = gpu.pipelines.get(v, source, { WG, KV_F16: 0, ...(source.includes('override PAIRS') ? { PAIRS: D / 2 } : {}) });
      const u = new Uniforms().u32(nq).u32(H).u32(H / Hkv).u32(Hkv).u32(D / 2).u32(ps).u32(H * D).u32(0).f32(0.125);
      const run = async (reps: number) => { const rec = new CommandRecorder(gpu); for (let i = 0; i < reps; i++) rec.dispatch(pipe, [q, tables, rowInfo, pool, out], u, Math.ceil((nq * H) / WG)); await rec.submit(); };
      await run(1);
      let cpu = 1e9; for (let k = 0; k < 3; k++) { const c0 = process.cpuUsage(); await run(2); const c = process.cpuUsage(c0); cpu = Math.min(cpu, (c.user + c.system) / 2000); }
      console.log(`${label} ${v}: ${cpu.toFixed(1)} ms cpu`);
    }
  }
});
