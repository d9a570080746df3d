/**
 * One engine for every tab, without a browser: a page that goes away is
 * noticed through its Web Lock (a fake lock manager standing for
 * navigator.locks) — its client closes, its requests are aborted, other
 * clients run on; and WorkerEngine.create({ shared: true }) connects to the
 * shared hub when its probe reports a GPU, else falls back to a dedicated
 * one (MessageChannel ports standing for the Workers). The real thing, tabs
 * closed in Chromium: e2e/tabs.spec.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { MessagePort as NodeMessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { EngineHub, exposeConnection, type GpuProbe } from './hub.ts';
import { WorkerEngine, type DedicatedWorkerLike, type SharedWorkerLike } from './client.ts';
import { FakeLocks, collect, fakeLoader, finish, tick } from './hub-fakes.ts';
import type { EngineConnection } from './protocol.ts';

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await tick();
  expect(cond()).toBe(true);
}

describe('a page that goes away: the hub waits for its Web Lock', () => {
  it('granted the lock, the hub closes that client: its requests are aborted, its hold released; the other client’s stream runs on', async () => {
    const locks = new FakeLocks();
    const f = fakeLoader();
    const hub = new EngineHub(f.load, { kind: 'shared', locks });
    const gone: string[] = [];
    const a = hub.connect(() => gone.push('a'));
    const b = hub.connect(() => gone.push('b'));
    const closeTabA = locks.hold('tab-a');
    expect(await a.watchLock('tab-a')).toBe(true);
    await a.load('/m/one', {});
    await b.load('/m/one', {});
    let aChunks = 0;
    const aDone = collect(a, { request_id: 'x', max_tokens: 1000 }, () => void aChunks++);
    const aOther = a.createCompletion({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000, request_id: 'y' });
    const bDone = collect(b, { request_id: 'x', max_tokens: 40 });
    while (aChunks < 3) await tick();
    expect(gone).toEqual([]);

    closeTabA(); // the browser releases a dead document's locks
    await aDone;
    expect((await aOther)!.choices[0].finish_reason).toBe('abort');
    expect(f.made[0].aborted).toEqual(new Set(['c1/x', 'c1/y']));
    expect(finish(await bDone)).toBe('length');
    await until(() => gone.length > 0);
    expect(gone).toEqual(['a']);
    expect(await b.stats()).toMatchObject({ clients: 1, engineLoads: 1, worker: 'shared' });
    expect(hub.snapshot().clients).toEqual(['c2']);
    expect(f.made[0].destroyed).toBe(false);
    await expect(a.stats()).rejects.toThrow(/closed/);
    await b.close();
    expect(f.made[0].destroyed).toBe(true);
    expect(gone).toEqual(['a']); // an explicit close is not "gone"
  });

  it('close() first stops waiting; a second watchLock replaces the first; without Web Locks watchLock is false', async () => {
    const locks = new FakeLocks();
    const f = fakeLoader();
    const hub = new EngineHub(f.load, { locks });
    const gone: string[] = [];
    const a = hub.connect(() => gone.push('a'));
    const releaseA = locks.hold('a');
    await a.watchLock('a');
    expect(locks.waiting).toBe(1);
    await a.close();
    await until(() => locks.waiting === 0);
    releaseA();
    await tick();
    expect(gone).toEqual([]);
    await expect(a.watchLock('a')).rejects.toThrow(/closed/);

    const b = hub.connect(() => gone.push('b'));
    const [release1, release2] = [locks.hold('b1'), locks.hold('b2')];
    await b.watchLock('b1');
    await b.watchLock('b2');
    await until(() => locks.waiting === 1);
    release1();
    await tick();
    expect(hub.snapshot().clients).toEqual(['c2']);
    release2();
    await until(() => gone.length > 0);
    expect(gone).toEqual(['b']);
    expect(hub.snapshot().clients).toEqual([]);

    expect(await new EngineHub(f.load, { locks: null }).connect().watchLock('x')).toBe(false);
  });

  it('over a port: the page gone, the hub closes the client and its end of the port', async () => {
    const locks = new FakeLocks();
    const hub = new EngineHub(fakeLoader().load, { kind: 'shared', locks });
    const { port1, port2 } = new MessageChannel();
    exposeConnection(hub, port1);
    const page = Comlink.wrap<EngineConnection>(port2);
    const portClosed = new Promise<void>((resolve) => (port2 as unknown as NodeMessagePort).once('close', () => resolve()));
    const closeTab = locks.hold('tab');
    expect(await page.watchLock('tab')).toBe(true);
    await page.load('/m/one', {});
    expect(hub.snapshot().engines).toHaveLength(1);
    closeTab();
    await portClosed;
    expect(hub.snapshot()).toMatchObject({ clients: [], engines: [], engineLoads: 1 });
    page[Comlink.releaseProxy]();
  });
});

describe('WorkerEngine.create({ shared: true }): the shared hub, or a dedicated Worker', () => {
  const opened: WorkerEngine[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((e) => e.close()));
  });

  /** A "SharedWorker": each call is a new port to `hub` (as each tab's `new SharedWorker()` is). */
  const sharedWorkerOf = (hub: EngineHub) => (): SharedWorkerLike => {
    const { port1, port2 } = new MessageChannel();
    exposeConnection(hub, port1);
    return { port: port2 };
  };
  /** A "dedicated Worker": a port to a hub of its own; terminate() closes it. */
  const dedicatedWorkers = (made: EngineHub[]) => (): DedicatedWorkerLike => {
    const hub = new EngineHub(fakeLoader().load, { kind: 'dedicated' });
    made.push(hub);
    const { port1, port2 } = new MessageChannel();
    exposeConnection(hub, port1);
    return Object.assign(port2, { terminate: () => port2.close() });
  };
  const open = (e: WorkerEngine) => (opened.push(e), e);

  it('a SharedWorker with a GPU: every engine is a connection to it, and the model is loaded once', async () => {
    const f = fakeLoader();
    const hub = new EngineHub(f.load, { kind: 'shared', probeGpu: async () => ({ gpu: true, error: null }) });
    const dedicated: EngineHub[] = [];
    const make = () => open(WorkerEngine.create({ shared: true, sharedWorker: sharedWorkerOf(hub), dedicatedWorker: dedicatedWorkers(dedicated) }));
    const [a, b] = [make(), make()];
    expect(a.kind).toBe('connecting');
    await Promise.all([a.load('/m/one'), b.load('/m/one')]);
    expect([a.kind, await b.connected(), a.fallbackReason]).toEqual(['shared', 'shared', null]);
    expect(await a.stats()).toMatchObject({ clients: 2, engineLoads: 1, worker: 'shared' });
    expect(await b.probe()).toEqual({ kind: 'shared', webgpu: false, gpu: true, error: null, clients: 2, engineLoads: 1 }); // Node: no navigator.gpu
    expect(f.calls).toEqual(['/m/one']);
    expect(dedicated).toHaveLength(0);
    await a.close();
    expect((await b.stats()).clients).toBe(1);
  });

  const noGpu: GpuProbe = async () => ({ gpu: false, error: 'no WebGPU adapter' });
  const cases: [string, (o: { dead: EngineHub }) => Parameters<typeof WorkerEngine.create>[0] & object, RegExp][] = [
    ['no WebGPU in the SharedWorker', ({ dead }) => ({ sharedWorker: sharedWorkerOf(dead) }), /the SharedWorker has no WebGPU \(no WebGPU adapter\)/],
    ['no SharedWorker in this browser', () => ({}), /this browser has no SharedWorker/],
    ['a SharedWorker that cannot start', () => ({ sharedWorker: () => { throw new Error('blocked by policy'); } }), /could not start: blocked by policy/],
    ['a SharedWorker that never answers', () => ({ sharedWorker: () => ({ port: new MessageChannel().port2 }), probeTimeoutMs: 50 }), /did not answer: no answer in 50 ms/],
    ['a SharedWorker whose script fails', () => ({ sharedWorker: () => {
      const w = Object.assign(new EventTarget(), { port: new MessageChannel().port2 });
      setTimeout(() => w.dispatchEvent(new Event('error')), 5);
      return w;
    } }), /did not answer: its script failed to load/],
  ];
  for (const [what, options, reason] of cases) {
    it(`falls back to a dedicated Worker: ${what}`, async () => {
      const dead = new EngineHub(fakeLoader().load, { kind: 'shared', probeGpu: noGpu });
      const dedicated: EngineHub[] = [];
      const e = open(WorkerEngine.create({ shared: true, dedicatedWorker: dedicatedWorkers(dedicated), ...options({ dead }) }));
      const info = await e.load('/m/one');
      expect(info.modelId).toBe('one');
      expect(await e.connected()).toBe('dedicated');
      expect(e.fallbackReason).toMatch(reason);
      expect(await e.stats()).toMatchObject({ clients: 1, engineLoads: 1, worker: 'dedicated' });
      expect(dedicated).toHaveLength(1);
      const text: string[] = [];
      for await (const c of await e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 3 })) text.push(c.choices[0].delta.content ?? '');
      expect(text.join('')).toBe('w0 w1 w2 ');
      await until(() => dead.snapshot().clients.length === 0); // a probed SharedWorker without a GPU is let go
    });
  }

  it('create() and create(worker) still make a dedicated Worker at once', async () => {
    const dedicated: EngineHub[] = [];
    const e = open(WorkerEngine.create(dedicatedWorkers(dedicated)()));
    expect(e.kind).toBe('dedicated');
    await e.load('/m/one');
    expect((await e.stats()).worker).toBe('dedicated');
    expect(await e.probe()).toMatchObject({ kind: 'dedicated', clients: 1 });
  });
});
