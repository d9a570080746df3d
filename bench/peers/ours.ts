/** fastcache-web itself in the peers benchmark: Engine.load on the model folder, greedy generate from ids. */
import { Engine } from '../../src/engine/engine.ts';
import type { Gpu } from '../../src/gpu/context.ts';
import { TokenClock, type PeerRun, type PeerRuntime } from './runtime.ts';

export class OursRuntime implements PeerRuntime {
  readonly name: string;
  readonly backend = 'WebGPU';
  private engine: Engine | null = null;

  constructor(private readonly gpu: Gpu, private readonly weightDtype: 'f32' | 'f16') {
    this.name = `fastcache-web (${weightDtype} weights)`;
  }

  async load(url: string): Promise<void> {
    // KV in f32 as the peers keep it (llama.cpp is told to), so that greedy ids can be compared exactly
    this.engine = await Engine.load(this.gpu, url, { weightDtype: this.weightDtype, kvDtype: 'f32' });
  }

  async generate(prompt: number[], maxTokens: number): Promise<PeerRun> {
    const clock = new TokenClock();
    const r = await this.engine!.generate(prompt, { maxTokens, sampling: { temperature: 0 }, onToken: () => clock.token() });
    return clock.done(r.tokens);
  }

  async close(): Promise<void> {
    await this.engine?.destroy();
    this.engine = null;
  }
}
