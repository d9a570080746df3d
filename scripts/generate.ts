/**
 * Prints a completion from a model folder, headless, on Node's WebGPU.
 *
 *   npm run generate -- public/models/stories260K "Once upon a time" --max-tokens 100
 *   npm run generate -- public/models/tiny-qwen2 --chat "Hello" --temperature 0.8 --seed 3
 *
 * With no prompt, text models continue from BOS.
 */
import { parseArgs } from 'node:util';
import { acquireNodeGpu } from '../src/gpu/node-gpu.ts';
import { Engine } from '../src/engine/engine.ts';
import { localFolderSource } from '../src/model/source.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'max-tokens': { type: 'string', default: '120' },
    temperature: { type: 'string', default: '0' },
    'top-k': { type: 'string', default: '0' },
    'top-p': { type: 'string', default: '1' },
    seed: { type: 'string', default: '0' },
    stop: { type: 'string', multiple: true },
    chat: { type: 'boolean', default: false },
    'kv-dtype': { type: 'string', default: 'f32' },
    'weight-dtype': { type: 'string', default: 'f32' },
    ids: { type: 'boolean', default: false },
  },
});
const [dir, prompt = ''] = positionals;
if (!dir) {
  console.error('usage: npm run generate -- <model folder> [prompt] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR] [--chat] [--kv-dtype f16] [--ids]');
  process.exit(2);
}
const gpu = await acquireNodeGpu();
const engine = await Engine.load(gpu, localFolderSource(dir), {
  kvDtype: values['kv-dtype'] === 'f16' ? 'f16' : 'f32',
  weightDtype: values['weight-dtype'] === 'f16' ? 'f16' : 'f32',
});
const input = values.chat ? [{ role: 'user' as const, content: prompt }] : prompt === '' ? [engine.tokenizer.bosTokenId ?? 0] : prompt;
if (!values.chat && prompt) process.stdout.write(prompt);
const result = await engine.generate(input, {
  maxTokens: Number(values['max-tokens']),
  sampling: { temperature: Number(values.temperature), topK: Number(values['top-k']), topP: Number(values['top-p']), seed: Number(values.seed) },
  ...(values.stop ? { stop: values.stop } : {}),
  onToken: (c) => process.stdout.write(c.text),
});
process.stdout.write('\n');
if (values.ids) console.log(JSON.stringify(result.tokens));
const t = result.timing;
console.error(`[${result.tokens.length} tokens, ${result.finishReason}; TTFT ${t.ttftMs.toFixed(1)} ms, ${t.tokensPerSecond.toFixed(1)} tok/s decode on ${gpu.adapter.vendor} ${gpu.adapter.architecture}]`);
await engine.destroy();
process.exit(0);
