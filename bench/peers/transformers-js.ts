/**
 * transformers.js (@huggingface/transformers) in the peers benchmark, as its
 * users call it: AutoModelForCausalLM.from_pretrained on the exported ONNX
 * (fp32), model.generate with do_sample false, a streamer for the first
 * token's time. Offline: local models only, no browser cache (each load
 * reads the files, as ours does), onnxruntime-web's wasm served from here.
 */
import { AutoModelForCausalLM, BaseStreamer, env, Tensor, type PreTrainedModel, type TextStreamer } from '@huggingface/transformers';
import { loadOrt } from '../../src/model/vision-encoder.ts';
import { TokenClock, type PeerRun, type PeerRuntime } from './runtime.ts';

export class TransformersJsRuntime implements PeerRuntime {
  readonly name: string;
  readonly backend: string;
  private model: PreTrainedModel | null = null;

  constructor(private readonly device: 'webgpu' | 'wasm') {
    this.name = `transformers.js (${device})`;
    this.backend = device === 'webgpu' ? 'WebGPU (onnxruntime-web)' : 'wasm (onnxruntime-web)';
  }

  async load(url: string, name: string): Promise<void> {
    await loadOrt();
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.useBrowserCache = false;
    env.localModelPath = url.slice(0, url.length - name.length);
    this.model = await AutoModelForCausalLM.from_pretrained(name, { device: this.device, dtype: 'fp32' });
  }

  async generate(prompt: number[], maxTokens: number): Promise<PeerRun> {
    const clock = new TokenClock();
    const streamer = new FirstTokenStreamer(() => clock.token());
    const n = prompt.length;
    const out = (await this.model!.generate({
      input_ids: new Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, n]),
      attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
      max_new_tokens: maxTokens,
      do_sample: false,
      // generate()'s type asks for a TextStreamer; it calls only BaseStreamer's put/end
      streamer: streamer as unknown as TextStreamer,
    })) as Tensor;
    return clock.done(Array.from(out.data as BigInt64Array).slice(n).map(Number));
  }

  async close(): Promise<void> {
    await this.model?.dispose();
    this.model = null;
  }
}

/** generate() puts the prompt first, then each new token. */
class FirstTokenStreamer extends BaseStreamer {
  private puts = 0;

  constructor(private readonly onToken: () => void) {
    super();
  }

  override put(): void {
    if (this.puts++ > 0) this.onToken();
  }

  override end(): void {}
}
