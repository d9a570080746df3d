/**
 * Ask a model about an image from the terminal: the Worker engine runs in
 * headless Chromium (WebGPU; SwiftShader without a GPU), the answer streams
 * to stdout.
 *
 *   npm run chat -- --image cat.png "What is this?"
 *   npm run chat -- --model /models/tiny-vlm-shapes --image shapes.png --max-tokens 32 --press snapkv --ratio 0.5 "How many shapes are there?"
 */
import { readFileSync, existsSync } from 'node:fs';
import { extname } from 'node:path';
import { openHeadless } from './headless.ts';
import type { HeadlessChatArgs } from './chat-page.ts';

const MIME: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif', '.bmp': 'image/bmp' };
const USAGE = 'usage: npm run chat -- [--model /models/NAME | HUB_ID | URL] [--image FILE] [--max-tokens N] [--temperature T] [--press NAME --ratio R] [--browser PATH] "question"';

function parse(argv: string[]): HeadlessChatArgs & { browser?: string; imagePath?: string } {
  const a: HeadlessChatArgs & { browser?: string; imagePath?: string } = { model: '/models/tiny-vlm-shapes', question: '', maxTokens: 64, temperature: 0 };
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].startsWith('--') ? argv[i].slice(2).split(/=(.*)/s) : [null, null];
    if (k === null) {
      words.push(argv[i]);
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`--${k} needs a value\n${USAGE}`);
    if (k === 'model') a.model = v;
    else if (k === 'image') a.imagePath = v;
    else if (k === 'max-tokens') a.maxTokens = Number(v);
    else if (k === 'temperature') a.temperature = Number(v);
    else if (k === 'press') a.press = v;
    else if (k === 'ratio') a.ratio = Number(v);
    else if (k === 'browser') a.browser = v;
    else throw new Error(`unknown option --${k}\n${USAGE}`);
  }
  a.question = words.join(' ');
  if (!a.question) throw new Error(`no question given\n${USAGE}`);
  if (a.imagePath) {
    if (!existsSync(a.imagePath)) throw new Error(`image file not found: ${a.imagePath}`);
    const mime = MIME[extname(a.imagePath).toLowerCase()] ?? 'application/octet-stream';
    a.image = `data:${mime};base64,${readFileSync(a.imagePath).toString('base64')}`;
  }
  return a;
}

async function main(): Promise<void> {
  const { browser, imagePath: _, ...args } = parse(process.argv.slice(2));
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

main().catch((e) => {
  console.error(`\n${e instanceof Error ? e.message.replace(/^page\.evaluate: (Error: )?/, '') : String(e)}`);
  process.exit(1);
});
