/**
 * Quantized weights in the engine (weightDtype 'q8' | 'q4'): the real stories260K loads with
 * its layers' matrices quantized (embedding and head f16), reports its bytes per parameter, and
 * q8's greedy output agrees with f32's on ≥ 95 % of the positions (the bound; q4's is
 * reported, not bounded). The full measurement: `npm run bench -- quant`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from './engine.ts';

const PROMPTS = ['Once upon a time, there was a little girl named Lily.', 'Tom had a big red ball. One day'];
const TOKENS = 32;
const engines: Partial<Record<'f32' | 'q8' | 'q4', Engine>> = {};

beforeAll(async () => {
  const gpu = await testGpu();
  for (const d of ['f32', 'q8', 'q4'] as const) engines[d] = await Engine.load(gpu, modelRef('stories260K'), { weightDtype: d, kvPages: 32 });
});
afterAll(async () => {
  for (const e of Object.values(engines)) await e.destroy();
});

async function outputs(e: Engine): Promise<number[][]> {
  const out: number[][] = [];
  for (const p of PROMPTS) out.push((await e.generate(p, { maxTokens: TOKENS, ignoreEos: true, sampling: { temperature: 0 } })).tokens);
  return out;
}

function agreement(a: number[][], b: number[][]): number {
  let same = 0, all = 0;
  a.forEach((xs, k) => xs.forEach((t, i) => ((same += t === b[k][i] ? 1 : 0), all++)));
  return same / all;
}

describe('quantized weights (stories260K)', () => {
  it('report their dtype and bytes per parameter: q8 ≈ 1.13, q4 ≈ 0.63 (rows padded to 32), f32 4', async () => {
    const [f32, q8, q4] = await Promise.all([engines.f32!.info(), engines.q8!.info(), engines.q4!.info()]);
    expect([f32.weightDtype, q8.weightDtype, q4.weightDtype]).toEqual(['f32', 'q8', 'q4']);
    expect(f32.matrixBytesPerParam).toBe(4);
    expect(q8.matrixBytesPerParam).toBeGreaterThanOrEqual(1.125);
    expect(q8.matrixBytesPerParam).toBeLessThan(1.3);
    expect(q4.matrixBytesPerParam).toBeGreaterThanOrEqual(0.625);
    expect(q4.matrixBytesPerParam).toBeLessThan(0.75);
    expect(q4.weightBytes!).toBeLessThan(q8.weightBytes!);
    expect(q8.weightBytes!).toBeLessThan(f32.weightBytes!);
  });

  it('q8 greedy output agrees with f32 on ≥ 95 % of positions; q4 runs (its agreement reported)', async () => {
    const base = await outputs(engines.f32!);
    const q8 = agreement(await outputs(engines.q8!), base);
    const q4 = agreement(await outputs(engines.q4!), base);
    console.log(`stories260K greedy agreement with f32 over ${PROMPTS.length} × ${TOKENS} tokens: q8 ${q8.toFixed(3)}, q4 ${q4.toFixed(3)}`);
    expect(q8).toBeGreaterThanOrEqual(0.95);
    expect(q4).toBeGreaterThan(0);
    for (const e of Object.values(engines)) e.checkIdle();
  });

  it('an unknown weightDtype is refused at load, naming the choices', async () => {
    await expect(Engine.load(await testGpu(), modelRef('stories260K'), { weightDtype: 'q3' as never })).rejects.toThrow(/weightDtype must be 'auto', 'f32', 'f16', 'q8' or 'q4', got "q3"/);
  });
});
