/**
 * The engine hub with several connections in one process: engines shared by
 * model + options and ref-counted, request ids namespaced per client, aborts
 * only by the owner, a client's close() leaving the others alone. A fake
 * engine (no GPU) for the bookkeeping; the same over comlink ports (as a
 * SharedWorker's would be) through WorkerEngine. The real Engine under the
 * hub: hub-engine.node.test.ts; tabs that go away, the shared engine's
 * fallback: tabs.node.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EngineHub, engineKey, exposeConnection } from './hub.ts';
import { WorkerEngine } from './client.ts';
import { collect, fakeLoader, finish, tick } from './hub-fakes.ts';
import type { ChatCompletionChunk } from '../api/openai-types.ts';
import type { LoadProgress } from '../api/chat-types.ts';

describe('EngineHub (fake engines)', () => {
  it('two clients loading the same model with the same options share one engine', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const a = hub.connect();
    const b = hub.connect();
    const pa: LoadProgress[] = [];
    const pb: LoadProgress[] = [];
    // at once, options in another key order: one load, both hear its progress
    const [ia, ib] = await Promise.all([
      a.load('/m/one', { kvPages: 8, kvDtype: 'f16' }, (p) => void pa.push(p)),
      b.load('/m/one', { kvDtype: 'f16', kvPages: 8 }, (p) => void pb.push(p)),
    ]);
    expect(f.calls).toEqual(['/m/one']);
    expect(hub.engineLoads).toBe(1);
    expect(ia).toEqual(ib);
    expect(pa.map((p) => p.file)).toEqual(['config.json', 'model.safetensors']);
    expect(pb.map((p) => p.file)).toEqual(['config.json', 'model.safetensors']);
    expect((await a.stats()).clients).toBe(2);
    // a third, later: joins the loaded engine, no new load
    const c = hub.connect();
    await c.load('/m/one', { kvDtype: 'f16', kvPages: 8 });
    expect(f.calls).toHaveLength(1);
    expect((await b.stats()).clients).toBe(3);
    // other options: another engine
    const d = hub.connect();
    await d.load('/m/one', { kvDtype: 'f32' });
    expect(f.calls).toHaveLength(2);
    expect(await d.stats()).toMatchObject({ clients: 1, engineLoads: 2, worker: 'dedicated' });
    expect(hub.snapshot().engines.map((e) => e.holders)).toEqual([['c1', 'c2', 'c3'], ['c4']]);
    expect(hub.debugString()).toContain('held by c1 c2 c3');
  });

  it('the same request id in two clients: both run, the engine sees them apart, each gets its own id back', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [hub.connect(), hub.connect()];
    await a.load('/m/one', {});
    await b.load('/m/one', {});
    const [ca, cb] = await Promise.all([collect(a, { request_id: 'q', max_tokens: 5 }), collect(b, { request_id: 'q', max_tokens: 5 })]);
    expect(finish(ca)).toBe('length');
    expect(finish(cb)).toBe('length');
    expect(ca).toHaveLength(6);
    expect(new Set([...ca, ...cb].map((c) => c.id))).toEqual(new Set(['q']));
    expect(f.made[0].seen.sort()).toEqual(['c1/q', 'c2/q']);
    // non-streaming, and ids made up by the hub when the client gives none
    const done = await a.createCompletion({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, request_id: 'n' });
    expect(done).toMatchObject({ id: 'n', object: 'chat.completion', choices: [{ message: { content: 'w0 w1 w2 ' }, finish_reason: 'length' }] });
    await collect(b, { max_tokens: 1 });
    expect(f.made[0].seen).toContain('c2/req-1');
    // a duplicate id within one client is refused
    const long = collect(a, { request_id: 'dup', max_tokens: 1000 }, (_, n) => (n === 1 ? expect(collect(a, { request_id: 'dup' })).rejects.toThrow(/'dup' is already running/) : undefined));
    await tick();
    await a.abort('dup');
    expect(finish(await long)).toBe('abort');
  });

  it('a client cannot abort another client’s request, even with the same id', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [hub.connect(), hub.connect()];
    await a.load('/m/one', {});
    await b.load('/m/one', {});
    let bChunks = 0;
    const bDone = collect(b, { request_id: 'q', max_tokens: 40 }, () => void bChunks++);
    while (bChunks < 2) await tick();
    expect(await a.abort('q')).toBe(false); // A has no 'q'
    // A's own 'q': A's abort stops A's, B's runs on
    const aDone = collect(a, { request_id: 'q', max_tokens: 1000 }, async (_, n) => {
      if (n === 3) expect(await a.abort('q')).toBe(true);
    });
    expect(finish(await aDone)).toBe('abort');
    expect(finish(await bDone)).toBe('length');
    expect(await b.abort('q')).toBe(false); // finished
  });

  it('close() of one client aborts only its requests; the engine stays for the others; the last release destroys it', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [hub.connect(), hub.connect()];
    await a.load('/m/one', {});
    await b.load('/m/one', {});
    const engine = f.made[0];
    let aChunks = 0;
    const aDone = collect(a, { request_id: 'x', max_tokens: 1000 }, () => void aChunks++);
    const aOther = a.createCompletion({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000, request_id: 'y' });
    const bDone = collect(b, { request_id: 'x', max_tokens: 60 });
    while (aChunks < 3) await tick();
    await a.close();
    await aDone;
    expect((await aOther)!.choices[0].finish_reason).toBe('abort');
    expect(engine.aborted).toEqual(new Set(['c1/x', 'c1/y']));
    expect(engine.destroyed).toBe(false);
    expect(finish(await bDone)).toBe('length');
    expect((await b.stats()).clients).toBe(1);
    await expect(a.stats()).rejects.toThrow(/closed/);
    await expect(a.load('/m/one', {})).rejects.toThrow(/closed/);
    expect(hub.snapshot()).toEqual({ kind: 'dedicated', clients: ['c2'], engineLoads: 1, engines: [{ key: engineKey('/m/one', {}), modelRef: '/m/one', holders: ['c2'], loaded: true }] });
    await a.close(); // again: nothing more happens
    await b.close();
    expect(engine.destroyed).toBe(true);
    expect(hub.snapshot()).toEqual({ kind: 'dedicated', clients: [], engineLoads: 1, engines: [] });
  });

  it('a client’s load of another model releases its old engine (destroyed once nobody holds it)', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [hub.connect(), hub.connect()];
    await a.load('/m/one', {});
    await b.load('/m/one', {});
    const one = f.made[0];
    expect((await a.load('/m/two', {})).modelId).toBe('two');
    expect(one.destroyed).toBe(false); // B still holds it
    expect(hub.snapshot().engines.map((e) => [e.modelRef, e.holders])).toEqual([['/m/one', ['c2']], ['/m/two', ['c1']]]);
    await b.load('/m/two', {});
    expect(one.destroyed).toBe(true);
    expect(f.calls).toEqual(['/m/one', '/m/two']);
    expect((await b.stats()).clients).toBe(2);
    // alone on a model: released (and destroyed) before the next model loads, so two need not fit at once
    const c = hub.connect();
    await c.load('/m/three', {});
    const three = f.made[2];
    const loading = c.load('/m/four', {});
    while (f.calls.length < 4) await tick();
    expect(three.destroyed).toBe(true);
    await loading;
    // the same model again keeps the engine; the client's running request is aborted
    let n = 0;
    const running = collect(c, { max_tokens: 1000 }, () => void n++);
    while (n < 2) await tick();
    await c.load('/m/four', {});
    expect(finish(await running)).toBe('abort');
    expect(f.calls).toHaveLength(4);
  });

  it('a failed load leaves the client without an engine and is not kept: the next load tries again', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const a = hub.connect();
    await a.load('/m/one', {});
    await expect(a.load('/m/missing', {})).rejects.toThrow('/m/missing: 404');
    expect(f.made[0].destroyed).toBe(true);
    await expect(a.createCompletion({ messages: [{ role: 'user', content: 'hi' }] })).rejects.toThrow(/no model is loaded/);
    await expect(a.load('/m/missing', {})).rejects.toThrow('404');
    expect(f.calls).toEqual(['/m/one', '/m/missing', '/m/missing']);
    expect(hub.snapshot().engines).toEqual([]);
    await a.load('/m/one', {});
    expect((await a.info()).modelId).toBe('one');
  });

  it('abort() of a stream still being prepared is true, and the stream ends with abort as it starts', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const a = hub.connect();
    await a.load('/m/one', {});
    const done = collect(a, { request_id: 'early', max_tokens: 1000 });
    expect(await a.abort('early')).toBe(true);
    const chunks = await done;
    expect(finish(chunks)).toBe('abort');
    expect(chunks.length).toBeLessThan(5);
  });

  it('errors reach the caller; stats, info and resetStats go to the client’s engine', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const a = hub.connect();
    await expect(a.info()).rejects.toThrow(/no model is loaded/);
    await a.load('/m/one', { kvPages: 12 });
    await expect(a.createCompletion({ messages: [], stream: true }, () => {})).rejects.toThrow(TypeError);
    expect((await a.info()).kvPages).toBe(12);
    await a.resetStats();
    expect(f.made[0].resets).toBe(1);
  });
});

describe('EngineHub over comlink ports (as a SharedWorker serves them), through WorkerEngine', () => {
  const opened: WorkerEngine[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((e) => e.close()));
  });

  function connect(hub: EngineHub): WorkerEngine {
    const { port1, port2 } = new MessageChannel();
    exposeConnection(hub, port1);
    const e = WorkerEngine.connect(port2);
    opened.push(e);
    return e;
  }

  it('two pages share one engine; streams arrive in order; leaving early aborts; refusals reject from create()', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [connect(hub), connect(hub)];
    const progress: string[] = [];
    await a.load('/m/one', { onProgress: (p) => progress.push(p.file) });
    await b.load('/m/one');
    expect(progress).toEqual(['config.json', 'model.safetensors']);
    expect(f.made).toHaveLength(1);
    expect((await b.stats()).clients).toBe(2);

    const messages = [{ role: 'user' as const, content: 'hi' }];
    const text: string[] = [];
    for await (const c of await a.chat.completions.create({ messages, stream: true, max_tokens: 6, request_id: 's' })) {
      expect(c.id).toBe('s');
      text.push(c.choices[0].delta.content ?? '');
    }
    expect(text.join('')).toBe('w0 w1 w2 w3 w4 w5 ');
    expect((await b.chat.completions.create({ messages, max_tokens: 2 })).choices[0].message.content).toBe('w0 w1 ');

    let n = 0;
    for await (const _ of await b.chat.completions.create({ messages, stream: true, max_tokens: 1000, request_id: 'leave' })) if (++n === 2) break;
    while (f.made[0].active.size > 0) await tick();
    expect(f.made[0].aborted).toContain('c2/leave');

    await expect(a.chat.completions.create({ messages: [], stream: true })).rejects.toThrow(/non-empty array/);
    await expect(a.chat.completions.create({ messages: [], stream: true })).rejects.toMatchObject({ name: 'TypeError' }); // {name, message} cross
  });

  it('close() of one page releases its engine hold; the other page keeps answering; the last close destroys', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load);
    const [a, b] = [connect(hub), connect(hub)];
    await a.load('/m/one');
    await b.load('/m/one');
    const messages = [{ role: 'user' as const, content: 'hi' }];
    const aStream = await a.chat.completions.create({ messages, stream: true, max_tokens: 1000, request_id: 'q' });
    const bStream = await b.chat.completions.create({ messages, stream: true, max_tokens: 30, request_id: 'q' });
    const drain = async (s: AsyncIterable<ChatCompletionChunk>) => {
      let last: ChatCompletionChunk | null = null;
      try {
        for await (const c of s) last = c;
      } catch {
        return 'gone';
      }
      return last?.choices[0].finish_reason;
    };
    const aEnd = drain(aStream);
    await a.close();
    expect(['abort', 'gone', null]).toContain(await aEnd); // a closed page's stream just ends
    expect(await drain(bStream)).toBe('length');
    expect(f.made[0].destroyed).toBe(false);
    expect(hub.snapshot().clients).toEqual(['c2']);
    await b.close();
    expect(f.made[0].destroyed).toBe(true);
  });
});
