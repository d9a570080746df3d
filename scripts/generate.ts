/**
 * Prints a completion from a model folder, headless, on Node's WebGPU.
 *
 *   npm run generate -- public/models/stories260K "Once upon a time" --max-tokens 100
 *   npm run generate -- public/models/tiny-qwen2 --chat "Hello" --temperature 0.8 --seed 3
 *
 * With no prompt, text models continue from BOS. Errors are one line on
 * stderr (scripts/cli-errors.ts): exit 2 for a bad command line, 1 otherwise.
 */
import { statSync } from 'node:fs';
import { choiceFlag, intFlag, numberFlag, parseFlags, runCli, UsageError } from './cli-errors.ts';

const USAGE = 'usage: npm run generate -- <model folder> [prompt] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR] [--chat] [--kv-dtype f32|f16] [--weight-dtype f32|f16] [--ids] [--verbose]';

function parse() {
  const { values, positionals } = parseFlags({
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
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const [dir, ...words] = positionals;
  if (!dir) throw new UsageError('no model folder given (the first argument); --help for usage');
  if (values.stop?.some((s) => s === '')) throw new UsageError('--stop must not be empty');
  return {
    dir,
    prompt: words.join(' '), // an unquoted prompt is the words that follow the folder
    chat: values.chat,
    ids: values.ids,
    stop: values.stop,
    maxTokens: intFlag('max-tokens', values['max-tokens'], 1),
    sampling: {
      temperature: numberFlag('temperature', values.temperature, 0, 2), // OpenAI's range, as chat.completions checks it
      topK: intFlag('top-k', values['top-k'], 0),
      topP: numberFlag('top-p', values['top-p'], 0, 1, { above: true }),
      seed: intFlag('seed', values.seed, 0, 2 ** 32 - 1),
    },
    kvDtype: choiceFlag('kv-dtype', values['kv-dtype'], ['f32', 'f16'] as const),
    weightDtype: choiceFlag('weight-dtype', values['weight-dtype'], ['f32', 'f16'] as const),
  };
}

async function main(): Promise<void> {
  const a = parse();
  if (!a) {
    console.log(USAGE);
    return;
  }
  // before the GPU starts: the commonest mistake costs nothing to report
  const st = statSync(a.dir, { throwIfNoEntry: false });
  if (!st) throw new Error(`model folder not found: ${a.dir}`);
  if (!st.isDirectory()) throw new Error(`not a model folder: ${a.dir} is a file`);
  const { acquireNodeGpu } = await import('../src/gpu/node-gpu.ts');
  const { Engine } = await import('../src/engine/engine.ts');
  const { localFolderSource } = await import('../src/model/source.ts');
  const gpu = await acquireNodeGpu();
  const engine = await Engine.load(gpu, localFolderSource(a.dir), { kvDtype: a.kvDtype, weightDtype: a.weightDtype });
  try {
    const input = a.chat ? [{ role: 'user' as const, content: a.prompt }] : a.prompt === '' ? [engine.tokenizer.bosTokenId ?? 0] : a.prompt;
    if (!a.chat && a.prompt) process.stdout.write(a.prompt);
    const result = await engine.generate(input, {
      maxTokens: a.maxTokens,
      sampling: a.sampling,
      ...(a.stop ? { stop: a.stop } : {}),
      onToken: (c) => process.stdout.write(c.text),
    });
    process.stdout.write('\n');
    if (a.ids) console.log(JSON.stringify(result.tokens));
    const t = result.timing;
    console.error(`[${result.tokens.length} tokens, ${result.finishReason}; TTFT ${t.ttftMs.toFixed(1)} ms, ${t.tokensPerSecond.toFixed(1)} tok/s decode on ${gpu.adapter.vendor} ${gpu.adapter.architecture}]`);
  } finally {
    await engine.destroy();
  }
}

runCli(main, { exit: true }); // the GPU device would keep Node running
