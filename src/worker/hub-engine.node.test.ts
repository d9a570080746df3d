/**
 * The hub on the real Engine (tiny-llama-gqa, greedy, Node's WebGPU): two
 * clients share one engine and get the same answer for the same request id;
 * one client's close() aborts its stream and frees its pages while the other's
 * runs to the end; the last close destroys the engine.
 */
import { describe, expect, it } from 'vitest';
import { testGpu } from '../../test/gpu.ts';
import { modelRef } from '../../test/models.ts';
import { Engine } from '../engine/engine.ts';
import { EngineHub } from './hub.ts';
import type { EngineConnection } from './protocol.ts';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../api/openai-types.ts';

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function collect(c: EngineConnection, req: ChatCompletionRequest, onChunk?: () => void): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  await c.createCompletion({ ...req, stream: true }, (x) => {
    chunks.push(x);
    onChunk?.();
  });
  return chunks;
}

const finish = (chunks: ChatCompletionChunk[]) => chunks.at(-1)?.choices[0].finish_reason;

describe('EngineHub on the real Engine (tiny-llama-gqa)', () => {
  it('two clients share one engine and get the same greedy answer; one client’s close leaves the other’s stream running; the last close destroys', async () => {
    const gpu = await testGpu();
    const engines: Engine[] = [];
    let destroyed = 0;
    const hub = new EngineHub(async (ref, opts) => {
      const e = await Engine.load(gpu, ref, opts);
      const destroy = e.destroy.bind(e);
      e.destroy = async () => {
        destroyed++;
        await destroy();
      };
      engines.push(e);
      return e;
    });
    const [a, b] = [hub.connect(), hub.connect()];
    const ref = modelRef('tiny-llama-gqa');
    const [ia, ib] = await Promise.all([a.load(ref, { kvPages: 32 }), b.load(ref, { kvPages: 32 })]);
    expect(engines).toHaveLength(1);
    expect(ia).toEqual(ib);
    expect(ia.architecture).toBe('llama');

    const req = { messages: [{ role: 'user' as const, content: 'Once upon a time' }], max_tokens: 12, temperature: 0, ignore_eos: true, request_id: 'q' };
    const text = (cs: ChatCompletionChunk[]) => cs.map((c) => c.choices[0].delta.content ?? '').join('');
    const [ca, cb] = await Promise.all([collect(a, req), collect(b, req)]);
    expect(finish(ca)).toBe('length');
    expect(finish(cb)).toBe('length');
    expect(text(ca)).toBe(text(cb));
    expect(text(ca).length).toBeGreaterThan(0);
    expect(new Set([...ca, ...cb].map((c) => c.id))).toEqual(new Set(['q']));
    expect(await a.abort('q')).toBe(false);

    let aChunks = 0;
    const aDone = collect(a, { ...req, max_tokens: 200 }, () => void aChunks++);
    const bDone = collect(b, { ...req, max_tokens: 24 });
    while (aChunks < 3) await tick();
    await a.close();
    await aDone;
    const bChunks = await bDone;
    expect(finish(bChunks)).toBe('length');
    expect(bChunks.at(-1)!.usage!.completion_tokens).toBe(24);
    const s = await b.stats();
    expect(s.clients).toBe(1);
    expect(s.engineLoads).toBe(1);
    expect(s.requestsAborted).toBe(1);
    expect(s.pool.pagesInUse).toBe(0);
    expect(destroyed).toBe(0);
    await b.close();
    expect(destroyed).toBe(1);
    expect(hub.snapshot()).toEqual({ kind: 'dedicated', clients: [], engineLoads: 1, engines: [] });
  });
});
