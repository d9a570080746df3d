import { describe, expect, it } from 'vitest';
import addSource from '../../shaders/add.wgsl?raw';
import { testGpu, rng, randomF32 } from '../../test/gpu.ts';
import type { Gpu } from './context.ts';
import { readF32, storageBuffer, uploadBuffer } from './buffers.ts';
import { CommandRecorder } from './recorder.ts';
import { GpuTimer } from './timestamps.ts';
import { Uniforms } from './uniforms.ts';
import { EncodeCache } from './encode-cache.ts';
import { encodeAdd } from './kernels/add.ts';

/**
 * The device's error-scope stack is empty: popping rejects. dawn.node and
 * Chromium both reject with an OperationError "No error scopes to pop" (the
 * WebGPU spec's behaviour); a recorder that leaked its scope would instead
 * resolve this pop with null.
 */
async function expectNoOpenErrorScope(gpu: Gpu): Promise<void> {
  const err = await gpu.device.popErrorScope().then(() => null, (e: Error) => e);
  expect(err?.name, 'popErrorScope() on the empty stack').toBe('OperationError');
  expect(err?.message).toMatch(/No error scopes to pop/);
}

/** c = a + b on the GPU in its own recorder; returns c. */
async function addOnGpu(gpu: Gpu, a: Float32Array, b: Float32Array): Promise<Float32Array> {
  const ga = uploadBuffer(gpu, 'a', a), gb = uploadBuffer(gpu, 'b', b), gc = storageBuffer(gpu, 'c', a.byteLength);
  const rec = new CommandRecorder(gpu, 'ok');
  encodeAdd(rec, { a: ga, b: gb, out: gc, n: a.length });
  await rec.submit();
  const out = await readF32(gpu, gc);
  [ga, gb, gc].forEach((x) => gpu.destroyBuffer(x));
  return out;
}

const sum = (a: Float32Array, b: Float32Array) => a.map((x, i) => x + b[i]); // Float32Array.map rounds each sum to f32

describe('CommandRecorder', () => {
  it('leaves no error scope and no buffer behind when recording throws, and the device keeps working', async () => {
    const gpu = await testGpu();
    const before = gpu.memory.snapshot();
    const small = uploadBuffer(gpu, 'small', new Float32Array(4)), out = storageBuffer(gpu, 'out', 16);

    // A wrapper's shape guard throws after a first dispatch was recorded; the recorder is dropped.
    const broken = new CommandRecorder(gpu, 'broken');
    encodeAdd(broken, { a: small, b: small, out, n: 4 });
    expect(broken.dispatches).toBe(1);
    expect(() => encodeAdd(broken, { a: small, b: small, n: 1000 })).toThrow(/add: buffer 'a' holds 16 bytes but the call needs 4000/);
    await expectNoOpenErrorScope(gpu);
    expect(gpu.memory.snapshot().byLabel.uniforms ?? 0).toBe(before.byLabel.uniforms ?? 0);

    // Later valid work computes the right values.
    const rand = rng(1);
    const a = randomF32(1001, rand), b = randomF32(1001, rand);
    expect(await addOnGpu(gpu, a, b)).toEqual(sum(a, b));

    // A later invalid dispatch (binding range past the buffer's end) rejects from submit.
    const bad = new CommandRecorder(gpu, 'bad');
    const pipeline = gpu.pipelines.get('add', addSource, { WG: 256 }, 'main_inplace');
    bad.dispatch(pipeline, [{ buffer: small, size: 1024 }, small], new Uniforms().u32(4), 1);
    await expect(bad.submit()).rejects.toThrow(/^WebGPU rejected 'bad': .*Binding size \(1024\) is larger than the size \(16\)/s);
    await expectNoOpenErrorScope(gpu);
    expect(await addOnGpu(gpu, b, a)).toEqual(sum(b, a));
    expect(gpu.memory.snapshot().byLabel.uniforms ?? 0).toBe(before.byLabel.uniforms ?? 0);
    [small, out].forEach((x) => gpu.destroyBuffer(x));
  });

  it('closes its error scope and frees its uniforms when encoding throws inside submit', async () => {
    const gpu = await testGpu();
    const before = gpu.memory.snapshot().byLabel.uniforms ?? 0;
    const buf = uploadBuffer(gpu, 'buf', new Float32Array(4)), other = storageBuffer(gpu, 'other', 16);
    const rec = new CommandRecorder(gpu, 'nan');
    const pipeline = gpu.pipelines.get('add', addSource, { WG: 256 }, 'main_inplace');
    rec.dispatch(pipeline, [buf, other], new Uniforms().u32(4), 1);
    rec.dispatch(pipeline, [buf, other], new Uniforms().u32(4), [NaN]); // WebIDL rejects NaN workgroup counts with a TypeError
    await expect(rec.submit()).rejects.toThrow(TypeError);
    await expectNoOpenErrorScope(gpu);
    expect(gpu.memory.snapshot().byLabel.uniforms ?? 0).toBe(before);
    expect(() => rec.dispatch(pipeline, [buf, other], null, 1)).toThrow(/CommandRecorder 'nan': already submitted/);
    await expect(rec.submit()).rejects.toThrow(/already submitted/);
    await expectNoOpenErrorScope(gpu);
    [buf, other].forEach((x) => gpu.destroyBuffer(x));
  });

  it('orders copies and dispatches as recorded: each reads what the other wrote', async () => {
    const gpu = await testGpu();
    const rand = rng(2);
    const n = 1003; // four workgroups of 256, the last partial
    const a = randomF32(n, rand);
    const A = uploadBuffer(gpu, 'A', a);
    const [B, C, D, E] = ['B', 'C', 'D', 'E'].map((l) => storageBuffer(gpu, l, n * 4));
    const timer = GpuTimer.create(gpu);
    const rec = new CommandRecorder(gpu, 'interleaved', timer ?? undefined);
    rec.copy(A, 0, B, 0, n * 4); //                  B = a
    encodeAdd(rec, { a: B, b: A, out: C, n }); //    C = B + a   (a dispatch reads what a copy wrote)
    encodeAdd(rec, { a: C, b: A, n }); //            C += a      (same pass: reads the dispatch before)
    rec.copy(C, 0, D, 0, n * 4); //                  D = C       (a copy reads what a dispatch wrote)
    encodeAdd(rec, { a: D, b: B, n }); //            D += B      (a new pass after the copy)
    rec.copy(D, 16, E, 8, (n - 8) * 4); //           E[2..n-6) = D[4..n-4)
    expect(rec.dispatches).toBe(3);
    await rec.submit();

    const c = sum(sum(a, a), a);
    const d = sum(c, a);
    expect(await readF32(gpu, B)).toEqual(a);
    expect(await readF32(gpu, C)).toEqual(c);
    expect(await readF32(gpu, D)).toEqual(d);
    const e = await readF32(gpu, E);
    expect(e.subarray(2, n - 6)).toEqual(d.subarray(4, n - 4));
    expect(Array.from(e.subarray(0, 2))).toEqual([0, 0]);
    if (timer) {
      expect(await timer.read()).toBeGreaterThanOrEqual(0);
      timer.destroy();
    }
    [A, B, C, D, E].forEach((x) => gpu.destroyBuffer(x));
  });

  it('a perDispatch timer times each kernel in its own pass, named by its pipeline, and the results are unchanged', async () => {
    const gpu = await testGpu();
    const timer = GpuTimer.create(gpu, 8, { perDispatch: true });
    if (!timer) return; // the adapter has no timestamp queries
    const n = 517;
    const a = randomF32(n, rng(3));
    const A = uploadBuffer(gpu, 'A', a);
    const [B, C] = ['B', 'C'].map((l) => storageBuffer(gpu, l, n * 4));
    const rec = new CommandRecorder(gpu, 'profiled', timer);
    rec.copy(A, 0, B, 0, n * 4);
    encodeAdd(rec, { a: B, b: A, out: C, n });
    encodeAdd(rec, { a: C, b: A, n });
    encodeAdd(rec, { a: C, b: B, n });
    await rec.submit();
    const passes = await timer.readPasses();
    expect(passes).toHaveLength(3);
    for (const p of passes) {
      expect(p.label).toMatch(/^add/);
      expect(p.ms).toBeGreaterThanOrEqual(0);
    }
    expect(await readF32(gpu, C)).toEqual(sum(sum(sum(a, a), a), a)); // B = a
    expect(await timer.read()).toBe(0); // read everything already
    timer.destroy();
    [A, B, C].forEach((x) => gpu.destroyBuffer(x));
  });
  it('with an EncodeCache reuses one uniform buffer and its bind groups across submits, grows it when a submit needs more, and computes the same values', async () => {
    const gpu = await testGpu();
    const uniformBytes = () => gpu.memory.snapshot().byLabel.uniforms ?? 0;
    const before = uniformBytes();
    const cache = new EncodeCache(gpu, 'test');
    const rand = rng(4);
    const a = randomF32(1003, rand), b = randomF32(1003, rand);
    const A = uploadBuffer(gpu, 'A', a), B = uploadBuffer(gpu, 'B', b), C = storageBuffer(gpu, 'C', 1003 * 4);
    // the same bindings with different uniforms (n) and workgroup counts: the bind groups are reused, the values follow n
    for (const n of [1003, 517, 1003]) {
      const rec = new CommandRecorder(gpu, 'cached', undefined, cache);
      encodeAdd(rec, { a: A, b: B, out: C, n }); // C = a + b
      encodeAdd(rec, { a: C, b: A, n }); //         C += a
      await rec.submit({ awaitGpu: false }); // the read below waits for the GPU
      expect((await readF32(gpu, C)).subarray(0, n)).toEqual(sum(sum(a, b), a).subarray(0, n));
      expect(cache.cachedGroups).toBe(2);
      expect(uniformBytes() - before).toBe(4096);
    }
    // 40 dispatches need 40 × 256 uniform bytes: the buffer grows to 16 KiB, the old bind groups go with the old buffer
    const rec = new CommandRecorder(gpu, 'grown', undefined, cache);
    encodeAdd(rec, { a: A, b: B, out: C, n: 1003 });
    let want = sum(a, b);
    for (let i = 1; i < 40; i++) {
      encodeAdd(rec, { a: C, b: A, n: 1003 });
      want = sum(want, a);
    }
    await rec.submit();
    expect(await readF32(gpu, C)).toEqual(want);
    expect(uniformBytes() - before).toBe(16384);
    expect(cache.cachedGroups).toBe(40); // one per uniform slice; the first two went with the 4 KiB buffer
    cache.destroy();
    expect(uniformBytes()).toBe(before);
    await expectNoOpenErrorScope(gpu);
    [A, B, C].forEach((x) => gpu.destroyBuffer(x));
  });
});
