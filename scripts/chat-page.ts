/**
 * The page behind `npm run chat`: the same Worker engine as the chat page,
 * driven from the terminal through Playwright (scripts/chat.ts).
 */
import { WorkerEngine } from '../src/worker/client.ts';
import type { ContentPart, EngineInfo } from '../src/api/index.ts';

export interface HeadlessChatArgs {
  model: string;
  question: string;
  /** data: URL of the image, if any */
  image?: string;
  maxTokens: number;
  temperature: number;
  press?: string;
  ratio?: number;
}

declare global {
  interface Window {
    headlessChat(a: HeadlessChatArgs): Promise<{ info: EngineInfo; text: string; usage: unknown; stats: unknown }>;
    onChatToken(text: string): void;
    onChatStatus(text: string): void;
  }
}

window.headlessChat = async (a) => {
  const engine = WorkerEngine.create();
  try {
    const info = await engine.load(a.model, { onProgress: (p) => window.onChatStatus(`loading ${p.file} ${p.total ? Math.round((100 * p.loaded) / p.total) + '%' : ''}`) });
    const content: ContentPart[] = [...(a.image ? [{ type: 'image_url' as const, image_url: { url: a.image } }] : []), { type: 'text', text: a.question }];
    let text = '';
    let usage: unknown = null;
    const stream = await engine.chat.completions.create({
      messages: [{ role: 'user', content }], stream: true, max_tokens: a.maxTokens, temperature: a.temperature,
      ...(a.press ? { kv_compression: { press: a.press, ratio: a.ratio ?? 0.5 } } : {}),
    });
    for await (const c of stream) {
      const d = c.choices[0].delta.content ?? '';
      text += d;
      if (d) window.onChatToken(d);
      if (c.usage) usage = c.usage;
    }
    return { info, text, usage, stats: await engine.stats() };
  } finally {
    engine.terminate();
  }
};
