/**
 * What reaches the page is shown as text (issue 16, part 4): a fake engine
 * whose answer is forced to markup (`<img src=x onerror=…>`, `<script>`),
 * split across chunks, a user question of markup, errors and model names of
 * markup — on the page's chat (ChatApp, full) and in <fastcache-chat> — and
 * SVG uploads with script, refused before any preview exists. Each test ends
 * by waiting a tick in which a created <img> would have fired its onerror;
 * a positive control shows that the wait is long enough.
 */
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ChatApp } from './chat-app.ts';
import { ImageInput } from './image-input.ts';
import { SVG_REFUSED } from './svg-check.ts';
import { FastcacheChat } from '../component/fastcache-chat.ts';
import type { ChatCompletionChunk, ChatEngine, ChatEngineFactory, EngineInfo } from '../api/index.ts';

declare global {
  interface Window {
    __xss?: number;
    __svg?: number;
    __control?: number;
  }
}

const IMG = '<img src=x onerror=window.__xss=1>';
const SCRIPT = '<script>window.__xss=2</script>';
/** The answer, cut mid-tag so no single chunk holds a whole element. */
const CHUNKS = ['Here: <img src=x on', 'error=window.__xss=1>', ' and <scr', 'ipt>window.__xss=2</scr', 'ipt>', '<b onmouseover=window.__xss=3>bold</b>'];
const SCRIPTED_SVG = '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__svg=1"><script>window.__svg=1</script><circle r="5"/></svg>';
const ACTIVE = 'img, script, iframe, object, embed, svg, b, a, style';

const settle = () => new Promise((r) => setTimeout(r, 300));

interface FakeScript {
  chunks?: string[];
  /** Thrown after the chunks, mid-stream. */
  failWith?: string;
  /** The factory rejects (the model does not load). */
  loadError?: string;
  info?: Partial<EngineInfo>;
}

function fakeEngines(script: FakeScript): ChatEngineFactory {
  const info: EngineInfo = {
    modelId: 'fake', architecture: 'llama', parameters: 1000, weightDtype: 'f32', kvDtype: 'f32', adapter: 'none', kvPages: 1, kvPageBytes: 1,
    pageSize: 16, maxPositions: 512, vision: true, visionBackend: null, randomWeights: false, ...script.info,
  };
  const chunk = (content: string | null, finish: 'stop' | null): ChatCompletionChunk => ({
    id: 'c', object: 'chat.completion.chunk', created: 0, model: info.modelId, choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish, logprobs: null }],
  });
  const engine: ChatEngine = {
    chat: {
      completions: {
        create: (async () => (async function* () {
          for (const c of script.chunks ?? []) {
            await new Promise((r) => setTimeout(r, 1));
            yield chunk(c, null);
          }
          if (script.failWith) throw new Error(script.failWith);
          yield chunk(null, 'stop');
        })()) as unknown as ChatEngine['chat']['completions']['create'],
      },
    },
    abort: async () => true,
    info: async () => info,
  };
  return async () => {
    if (script.loadError) throw new Error(script.loadError);
    return engine;
  };
}

async function until(what: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!what()) {
    if (performance.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The page's chat (full) in a fresh host, loaded on the fake engine. */
async function page(script: FakeScript): Promise<{ app: ChatApp; host: HTMLElement }> {
  const host = document.createElement('div');
  document.body.append(host);
  const app = new ChatApp(host, { engines: fakeEngines(script), model: 'fake', host, pasteTarget: host, full: true });
  await until(() => host.dataset.state === 'ready' || host.dataset.state === 'error');
  return { app, host };
}

const text = (root: ParentNode, sel: string) => root.querySelector(sel)?.textContent ?? '';

beforeAll(() => {
  delete window.__xss;
  delete window.__svg;
});

afterEach(async () => {
  await settle();
  expect(window.__xss).toBeUndefined();
  expect(window.__svg).toBeUndefined();
  document.body.replaceChildren();
});

test('control: markup parsed as HTML does run within the wait', async () => {
  const div = document.createElement('div');
  document.body.append(div);
  div.innerHTML = '<img src=x onerror=window.__control=1>'; // what the page must never do
  await settle();
  expect(window.__control).toBe(1);
});

describe('the chat page (ChatApp)', () => {
  test('a model answer of <img onerror> and <script> shows literally; no element is created', async () => {
    const { app, host } = await page({ chunks: CHUNKS });
    const answer = await app.ask(`${IMG} what is ${SCRIPT}?`);
    expect(answer.text).toBe(CHUNKS.join(''));
    const transcript = host.querySelector('.fc-transcript')!;
    expect(text(transcript, '.fc-answer')).toBe(CHUNKS.join(''));
    expect(text(transcript, '.fc-user .fc-text')).toBe(`${IMG} what is ${SCRIPT}?`); // the user's own message, echoed as text
    expect(transcript.querySelectorAll(ACTIVE)).toHaveLength(0);
  });

  test('an error whose message is markup, mid-stream, is text in the banner and on the message', async () => {
    const { app, host } = await page({ chunks: ['partial '], failWith: `${IMG}${SCRIPT}` });
    await expect(app.ask('hi')).rejects.toThrow(IMG);
    expect(host.dataset.state).toBe('error');
    expect(text(host, '.fc-error-text')).toContain(`${IMG}${SCRIPT}`);
    expect(text(host, '.fc-user .fc-note')).toBe(`Not answered: ${IMG}${SCRIPT}`);
    expect(host.querySelectorAll(`.fc-transcript :is(${ACTIVE}), .fc-error :is(${ACTIVE})`)).toHaveLength(0);
  });

  test('a model that fails to load with a markup message, and a model id of markup: text', async () => {
    const failed = await page({ loadError: SCRIPT + IMG });
    expect(failed.host.dataset.state).toBe('error');
    expect(text(failed.host, '.fc-error-text')).toBe(`Could not load fake: ${SCRIPT}${IMG}`);
    expect(failed.host.querySelectorAll(`.fc-error :is(${ACTIVE})`)).toHaveLength(0);

    const named = await page({ info: { modelId: IMG, adapter: SCRIPT, vision: false } });
    expect(named.host.dataset.state).toBe('ready');
    expect(text(named.host, '#status')).toContain(`Ready: ${IMG}`);
    expect(text(named.host, '.fc-hint')).toBe(`${IMG} reads text only: type a message.`);
    expect(named.host.querySelectorAll(`.fc-header :is(${ACTIVE}), .fc-transcript :is(${ACTIVE})`)).toHaveLength(0);
  });

  test('an SVG with script, named .png and typed image/png, is refused by ask with the message; nothing is shown', async () => {
    const { app, host } = await page({ chunks: ['never'] });
    const svg = new File([SCRIPTED_SVG], 'cat.png', { type: 'image/png' });
    await expect(app.ask('what is it?', svg)).rejects.toThrow(SVG_REFUSED);
    expect(text(host, '.fc-error-text')).toContain(SVG_REFUSED);
    expect(host.querySelector('.fc-user')).toBeNull(); // no bubble, so no thumbnail of it
    expect(host.querySelectorAll('img, object, iframe, embed, svg')).toHaveLength(0);
  });
});

describe('the image input', () => {
  test.each([
    ['image/svg+xml, .svg', new File([SCRIPTED_SVG], 'logo.svg', { type: 'image/svg+xml' })],
    ['sniffed: .png, image/png', new File([SCRIPTED_SVG], 'photo.png', { type: 'image/png' })],
  ])('an SVG with <script> and onload (%s) is refused with the message, and no preview exists', async (_, file) => {
    const host = document.createElement('div');
    document.body.append(host);
    const errors: string[] = [];
    let picked = 0;
    const input = new ImageInput(host, host, (m) => errors.push(m), () => picked++);
    host.append(input.el);
    expect(await input.set(file)).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(SVG_REFUSED);
    expect([input.image, picked]).toEqual([null, 0]);
    expect(host.querySelectorAll('img, object, iframe, embed, svg')).toHaveLength(0);
    expect(host.querySelector('input[type=file]')!.getAttribute('accept')).not.toMatch(/svg|image\/\*/);
  });
});

describe('<fastcache-chat>', () => {
  let next: FakeScript = {};
  class FakeChat extends FastcacheChat {
    protected override createEngines(): ChatEngineFactory {
      return fakeEngines(next);
    }
  }
  beforeAll(() => customElements.define('fake-fastcache-chat', FakeChat));

  async function element(script: FakeScript, model = 'fake'): Promise<FakeChat> {
    next = script;
    const el = document.createElement('fake-fastcache-chat') as FakeChat;
    el.setAttribute('model', model);
    el.setAttribute('persist', 'off');
    document.body.append(el);
    await until(() => el.dataset.state === 'ready' || el.dataset.state === 'error');
    return el;
  }

  test('a model answer of <img onerror> and <script> shows literally inside the shadow root; the events carry it as text', async () => {
    const el = await element({ chunks: CHUNKS });
    const tokens: string[] = [];
    el.addEventListener('token', (e) => tokens.push((e as CustomEvent<{ text: string }>).detail.text));
    expect(await el.ask(IMG)).toBe(CHUNKS.join(''));
    const root = el.shadowRoot!;
    expect(text(root, '.fc-answer')).toBe(CHUNKS.join(''));
    expect(text(root, '.fc-user .fc-text')).toBe(IMG);
    expect(tokens.join('')).toBe(CHUNKS.join(''));
    expect(root.querySelectorAll(`.fc-transcript :is(${ACTIVE})`)).toHaveLength(0);
    expect(el.querySelectorAll('*')).toHaveLength(0); // nothing leaks into the light DOM either
  });

  test('errors of markup (load, mid-stream) and a model attribute of markup are text', async () => {
    const failing = await element({ loadError: IMG }, SCRIPT);
    expect(text(failing.shadowRoot!, '.fc-error-text')).toBe(`Could not load ${SCRIPT}: ${IMG}`);
    const el = await element({ chunks: ['a'], failWith: SCRIPT });
    const messages: string[] = [];
    el.addEventListener('error', (e) => messages.push((e as unknown as CustomEvent<{ message: string }>).detail.message));
    await expect(el.ask('hi')).rejects.toThrow(SCRIPT);
    expect(messages).toEqual([SCRIPT]);
    expect(text(el.shadowRoot!, '.fc-user .fc-note')).toBe(`Not answered: ${SCRIPT}`);
    for (const r of [failing.shadowRoot!, el.shadowRoot!]) expect(r.querySelectorAll(`.fc-transcript :is(${ACTIVE}), .fc-error :is(${ACTIVE}), .fc-header :is(${ACTIVE})`)).toHaveLength(0);
  });

  test('an SVG given to ask (named .png) is refused with the message', async () => {
    const el = await element({ chunks: ['never'] });
    await expect(el.ask('what?', new File([SCRIPTED_SVG], 'x.png', { type: 'image/png' }))).rejects.toThrow(SVG_REFUSED);
    expect(el.shadowRoot!.querySelectorAll('img, object, iframe, embed, svg')).toHaveLength(0);
  });
});
