/**
 * Ask a model about an image from the terminal: the Worker engine runs in
 * headless Chromium (WebGPU; SwiftShader without a GPU), the answer streams
 * to stdout.
 *
 *   npm run chat -- --image cat.png "What is this?"
 *   npm run chat -- --model /models/tiny-vlm-shapes --image shapes.png --max-tokens 32 --press snapkv --ratio 0.5 "How many shapes are there?"
 *
 * Errors are one line on stderr (scripts/cli-errors.ts): exit 2 for a bad
 * command line (checked before the browser starts), 1 otherwise.
 */
import { readFileSync, existsSync } from 'node:fs';
import { extname } from 'node:path';
import { openHeadless } from './headless.ts';
import type { HeadlessChatArgs } from './chat-page.ts';
import { intFlag, numberFlag, runCli, UsageError } from './cli-errors.ts';

const MIME: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif', '.bmp': 'image/bmp' };
const USAGE = 'usage: npm run chat -- [--model /models/NAME | HUB_ID | URL] [--image FILE] [--max-tokens N] [--temperature T] [--press NAME --ratio R] [--browser PATH] [--verbose] "question"';

function parse(argv: string[]): (HeadlessChatArgs & { browser?: string; imagePath?: string }) | null {
  const a: HeadlessChatArgs & { browser?: string; imagePath?: string } = { model: '/models/tiny-vlm-shapes', question: '', maxTokens: 64, temperature: 0 };
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].startsWith('--') ? argv[i].slice(2).split(/=(.*)/s) : [null, null];
    if (k === null) {
      words.push(argv[i]);
      continue;
    }
    if (k === 'help') return null;
    if (k === 'verbose') continue; // read by cli-errors.ts
    if (!['model', 'image', 'max-tokens', 'temperature', 'press', 'ratio', 'browser'].includes(k)) throw new UsageError(`unknown option '--${k}'; --help for usage`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`--${k} needs a value`);
    if (k === 'model') a.model = v;
    else if (k === 'image') a.imagePath = v;
    else if (k === 'max-tokens') a.maxTokens = intFlag(k, v, 1);
    else if (k === 'temperature') a.temperature = numberFlag(k, v, 0, 2); // OpenAI's range, as chat.completions checks it
    else if (k === 'press') a.press = v;
    else if (k === 'ratio') a.ratio = numberFlag(k, v, 0, 1);
    else a.browser = v;
  }
  if (a.ratio !== undefined && a.press === undefined) throw new UsageError('--ratio needs --press');
  if (a.ratio !== undefined && a.ratio >= 1) throw new UsageError(`--ratio must be below 1 (the fraction of the KV cache a press removes), got '${a.ratio}'`);
  a.question = words.join(' ');
  if (!a.question) throw new UsageError('no question given; --help for usage');
  if (a.imagePath) {
    if (!existsSync(a.imagePath)) throw new Error(`image file not found: ${a.imagePath}`);
    const mime = MIME[extname(a.imagePath).toLowerCase()] ?? 'application/octet-stream';
    a.image = `data:${mime};base64,${readFileSync(a.imagePath).toString('base64')}`;
  }
  return a;
}

async function main(): Promise<void> {
  const parsed = parse(process.argv.slice(2));
  if (!parsed) {
    console.log(USAGE);
    return;
  }
  const { browser, imagePath: _, ...args } = parsed;
  const h = await openHeadless('scripts/chat-page.html', browser ? { browser } : {});
  try {
    await h.page.exposeFunction('onChatToken', (t: string) => process.stdout.write(t));
    // a terminal gets one line of load progress, overwritten; a pipe gets nothing but the answer
    await h.page.exposeFunction('onChatStatus', (t: string) => process.stderr.isTTY && process.stderr.write(`\r${t.padEnd(60).slice(0, 60)}`));
    await h.page.waitForFunction(() => typeof window.headlessChat === 'function');
    h.page.setDefaultTimeout(600_000);
    const r = await h.page.evaluate((x) => window.headlessChat(x), args);
    const u = r.usage as { completion_tokens: number; extra: { ttftMs: number; tpotMs: number } } | null;
    process.stdout.write('\n');
    if (u) process.stderr.write(`${process.stderr.isTTY ? '\r' : ''}${r.info.modelId}: ${u.completion_tokens} tokens · TTFT ${u.extra.ttftMs.toFixed(0)} ms · ${u.extra.tpotMs > 0 ? (1000 / u.extra.tpotMs).toFixed(1) : '–'} tokens/s · ${r.info.adapter}${r.info.randomWeights ? ' · random weights: the answer is meaningless' : ''}\n`);
  } finally {
    await h.close();
  }
}

runCli(main);
