/**
 * wllama (@wllama/wllama: llama.cpp compiled to wasm) in the peers benchmark:
 * the GGUF written by bench/peers/llama-gguf.ts, loaded from a Blob (no OPFS
 * copy), greedy (temperature 0, top-k 1), no prompt cache between requests,
 * KV in f32; the prompt ids written as the file's one-character tokens
 * (codepoint-vocab.ts), the streamed text read back as ids.
 */
import { Wllama } from '@wllama/wllama';
import wasmUrl from '@wllama/wllama/esm/wasm/wllama.wasm?url';
import { idsToText, textToIds } from './codepoint-vocab.ts';
import { TokenClock, type PeerRun, type PeerRuntime } from './runtime.ts';

export class WllamaRuntime implements PeerRuntime {
  readonly name: string;
  backend: string;
  private w: Wllama | null = null;

  constructor(private readonly gpu: boolean, private readonly log: (s: string) => void) {
    this.name = gpu ? 'wllama (WebGPU)' : 'wllama (wasm)';
    this.backend = gpu ? 'WebGPU (llama.cpp)' : 'wasm (llama.cpp)';
  }

  async load(url: string): Promise<void> {
    const res = await fetch(`${url}/model.gguf`);
    if (!res.ok) throw new Error(`${url}/model.gguf: HTTP ${res.status}`);
    await this.loadBlob(await res.blob());
  }

  async loadBlob(blob: Blob): Promise<void> {
    // llama.cpp's log says where the layers went; warnings and errors are shown
    const native: string[] = [];
    const keep = (...a: unknown[]) => native.push(a.join(' '));
    const say = (...a: unknown[]) => (keep(...a), this.log(`wllama: ${a.join(' ')}`));
    this.w = new Wllama({ default: wasmUrl }, { logger: { debug: keep, log: keep, warn: say, error: say } });
    await this.w.loadModel([blob], { n_ctx: 1024, n_batch: 512, n_gpu_layers: this.gpu ? 999 : 0, cache_type_k: 'f32', cache_type_v: 'f32', n_parallel: 1 });
    const offload = native.join('\n').match(/offloaded (\d+)\/(\d+) layers to GPU/);
    const onGpu = !!offload && Number(offload[1]) > 0 && !native.some((l) => /Failed to get an adapter/.test(l));
    // without an adapter llama.cpp quietly runs on the CPU: not a WebGPU measurement
    if (this.gpu && !onGpu) throw new Error(`llama.cpp's WebGPU backend did not take the layers (${offload ? `offloaded ${offload[1]}/${offload[2]}` : 'no adapter in its worker'}); it would run on the CPU`);
    this.backend = this.gpu ? `WebGPU (llama.cpp), ${offload![1]}/${offload![2]} layers offloaded` : `wasm (llama.cpp), ${this.w.getNumThreads()} thread(s)`;
  }

  async generate(prompt: number[], maxTokens: number): Promise<PeerRun> {
    const clock = new TokenClock();
    const ids: number[] = [];
    // cache_prompt (llama-server's own field, not in wllama's types): no KV reuse between the timed requests
    const params = { prompt: idsToText(prompt), max_tokens: maxTokens, temperature: 0, top_k: 1, cache_prompt: false };
    await this.w!.createCompletion({
      ...params,
      stream: true,
      onData: (chunk) => {
        const tokens = textToIds(chunk.choices[0]?.text ?? '');
        if (tokens.length) clock.token();
        ids.push(...tokens);
      },
    });
    return clock.done(ids);
  }

  async close(): Promise<void> {
    await this.w?.exit();
    this.w = null;
  }
}
