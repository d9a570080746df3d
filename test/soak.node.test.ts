/**
 * The soak, short (the long one: `npm run bench -- soak`): ~80 requests over
 * stories260K and the shapes VLM on one device, in seeded bursts, 10 %
 * aborted (before the first token, mid-stream, at the end; by AbortSignal,
 * engine.abort(id) and leaving the stream), some ids reused after their
 * abort. Asserts what the benchmark measures: checkInvariants after every
 * step, checkIdle after every drained burst and at the end, the GPU bytes
 * back to their level after warm-up, every request equal to (or, aborted, a
 * prefix of) its solo greedy output, no errors. The heap is not asserted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGpu } from './gpu.ts';
import { modelRef } from './models.ts';
import { Engine } from '../src/engine/engine.ts';
import { shortSpecs, DEFAULT_PLAN, IMAGE_ITEMS, planSoak, SOAK_TEXT_LOAD, SOAK_VLM_LOAD } from '../bench/soak-workload.ts';
import { loadSoakImages, runSoak, type SoakEngines } from '../bench/soak-driver.ts';

const REQUESTS = 70;
let engines: SoakEngines;

beforeAll(async () => {
  const gpu = await testGpu();
  engines = {
    text: await Engine.load(gpu, modelRef('stories260K'), SOAK_TEXT_LOAD),
    vlm: await Engine.load(gpu, modelRef('tiny-vlm-shapes'), SOAK_VLM_LOAD),
  };
});
afterAll(async () => {
  await engines?.text.destroy();
  await engines?.vlm.destroy();
});

describe('soak (short)', () => {
  it(`${REQUESTS} requests in bursts with aborts and reused ids: idle, GPU bytes back, outputs = solo`, async () => {
    const specs = shortSpecs();
    const bursts = planSoak(specs, { ...DEFAULT_PLAN, requests: REQUESTS, seed: 7, maxBurst: 16, maxGapMs: 120 });
    const images = await loadSoakImages(modelRef('tiny-vlm-shapes'), IMAGE_ITEMS.map((i) => i.image));
    const r = await runSoak(engines, specs, bursts, { images, sampleEvery: 10, warmRounds: 1, heapBytes: () => process.memoryUsage().heapUsed, log: (s) => console.log(s) });
    console.log(r.specs.map((s) => `${s.key}:${s.soloMs.toFixed(0)}`).join(" "));
    console.log(JSON.stringify({ counts: r.counts, gpuBytes: { level: r.gpuBytes.level, end: r.gpuBytes.end }, wallMs: r.wallMs, idleChecks: r.idleChecks, invariantChecks: r.invariantChecks, engines: r.engines }));
    expect(r.failures).toEqual([]);
    expect(r.counts.errors).toBe(0);
    expect(r.counts.mismatches).toBe(0);
    expect(r.warmUp.mismatches).toBe(0);
    expect(r.counts.requests).toBe(REQUESTS);
    expect(r.counts.abortsPlanned).toBe(Math.round(REQUESTS * 0.1));
    expect(r.counts.aborted).toBeGreaterThan(0);
    expect(r.counts.reusedIds).toBeGreaterThan(0);
    expect(r.counts.reusedCompletedEqual).toBe(r.counts.reusedIds);
    expect(r.gpuBytes.end).toBe(r.gpuBytes.level);
    expect(r.idleChecks).toBeGreaterThan(2);
    expect(r.invariantChecks).toBeGreaterThan(REQUESTS);
  });
});
