/**
 * A lost GPU device (driver reset, GPU process crash; here `device.destroy()`
 * mid-generation, on a device of the test's own): every request in flight ends
 * with finish reason 'error' and a message saying the GPU was lost, the next
 * request rebuilds the engine on a new device, and its greedy output equals
 * the output before the loss — for the text model and for the shapes VLM (its
 * vision encoder included). Node only: each test acquires devices of its own.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { acquireNodeGpu } from '../gpu/node-gpu.ts';
import { Gpu } from '../gpu/context.ts';
import { Engine } from './engine.ts';
import { sureShapesItem } from '../../test/shapes-items.ts';
import type { GenerationResult } from './types.ts';

const PROMPT = 'Once upon a time';
const greedy = { maxTokens: 48, sampling: { temperature: 0 } };

/** Starts `n` streams, destroys the device once the first has `after` tokens; returns their results. */
async function loseMidGeneration(engine: Engine, gpu: Gpu, n: number, after = 4): Promise<GenerationResult[]> {
  let seen = 0;
  return Promise.all(
    Array.from({ length: n }, () =>
      engine.generate(PROMPT, { ...greedy, maxTokens: 400, ignoreEos: true, onToken: () => ++seen === after && gpu.device.destroy() }),
    ),
  );
}

const engines: Engine[] = [];
afterAll(async () => {
  for (const e of engines) await e.destroy();
});

describe('a lost device, text model', () => {
  it('ends what runs with an error, then the next request reloads and answers the same', async () => {
    const gpu = await acquireNodeGpu();
    const engine = await Engine.load(gpu, '/models/stories260K');
    engines.push(engine);
    const before = await engine.generate(PROMPT, greedy);
    const events: string[] = [];
    engine.on((e) => (e.kind === 'device-lost' || e.kind === 'device-recovered') && events.push(e.kind));

    const lost = await loseMidGeneration(engine, gpu, 3);
    for (const r of lost) {
      expect(r.finishReason).toBe('error');
      expect(r.error).toMatch(/GPU device was lost/);
      expect(r.tokens.length).toBeLessThan(400);
    }
    expect(engine.snapshot().device).toMatchObject({ losses: 1, stoppedRequests: 3, recoveries: 0 });

    const t0 = performance.now();
    const after = await engine.generate(PROMPT, greedy);
    const recoveryMs = performance.now() - t0;
    expect(after.tokens).toEqual(before.tokens);
    const d = engine.snapshot().device!;
    expect(d).toMatchObject({ losses: 1, recoveries: 1 });
    console.log(`text model: ${lost.length} requests ended 'error' (${lost.map((r) => r.tokens.length).join(', ')} tokens); rebuild ${d.lastRebuildMs!.toFixed(0)} ms, first answer after the loss ${recoveryMs.toFixed(0)} ms; output equal`);
    expect(events).toEqual(['device-lost', 'device-recovered']);
    engine.checkIdle();
  });

  it('chat.completions fails the stream with the message; reload() on a working device keeps answering the same', async () => {
    const gpu = await acquireNodeGpu();
    const engine = await Engine.load(gpu, '/models/stories260K');
    engines.push(engine);
    const before = await engine.generate(PROMPT, greedy);
    const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true, max_tokens: 400, ignore_eos: true, temperature: 0 });
    let chunks = 0;
    const read = (async () => {
      for await (const _ of stream) if (++chunks === 3) gpu.device.destroy();
    })();
    await expect(read).rejects.toThrow(/GPU device was lost/);

    await engine.reload(); // rebuilds on a new device now, rather than on the next request
    expect(engine.snapshot().device).toMatchObject({ losses: 1, recoveries: 1, reloads: 0 });
    expect((await engine.generate(PROMPT, greedy)).tokens).toEqual(before.tokens);
    await engine.reload(); // the device is fine: the same device, a fresh engine
    expect(engine.snapshot().device).toMatchObject({ reloads: 1 });
    expect((await engine.generate(PROMPT, greedy)).tokens).toEqual(before.tokens);
    engine.checkIdle();
  });

  it('a loss while idle: the next request rebuilds; an engine on a Gpu that cannot be acquired again says so', async () => {
    const own = await acquireNodeGpu();
    const plain = new Gpu(own.device, own.adapter); // no reacquire
    const engine = await Engine.load(plain, '/models/stories260K');
    engines.push(engine);
    await engine.generate(PROMPT, { maxTokens: 4 });
    own.device.destroy();
    await plain.lost;
    await expect(engine.generate(PROMPT, greedy)).rejects.toThrow(/lost and reloading the model failed: .*cannot be acquired again/);
    expect(() => engine.submit(PROMPT)).toThrow(/GPU device was lost/);
  });
});

describe('a lost device, shapes VLM', () => {
  it('the answer about a picture after recovery equals the one before (a new vision encoder too)', async () => {
    const { item, imagePath } = sureShapesItem();
    const image = new Blob([readFileSync(imagePath)], { type: 'image/png' });
    const messages = [{ role: 'user' as const, content: [{ type: 'image' as const, image }, { type: 'text' as const, text: item.question }] }];
    const gpu = await acquireNodeGpu();
    const engine = await Engine.load(gpu, '/models/tiny-vlm-shapes', { kvPages: 64 });
    engines.push(engine);
    const before = await engine.generate(messages, greedy);
    const lost = engine.generate(messages, { ...greedy, maxTokens: 400, ignoreEos: true, onToken: () => gpu.device.destroy() });
    expect((await lost).finishReason).toBe('error');
    const after = await engine.generate(messages, greedy);
    expect(after.tokens).toEqual(before.tokens);
    expect(engine.snapshot().vision.encoderCalls).toBe(1); // the new engine's encoder ran once for the picture
    engine.checkIdle();
  });
});
