/**
 * The streaming detokenizer on the shipped tokenizers: a continued prompt
 * streams decode(prompt + generated) − decode(prompt) — the first generated
 * token keeps its leading space (stories260K "One day, a big dog" + "▁named"
 * streamed "dognamed") — with no U+FFFD mid-stream for characters split
 * across tokens, on a SentencePiece-style tokenizer (stories260K: Metaspace
 * pieces, byte fallback, Strip) and a byte-level BPE (tiny-vlm-shapes, the
 * SmolLM vocabulary); a chat answer gains no leading space. Then the same
 * through the engine (forced tokens), which every stream (Worker, server)
 * takes its text from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IncrementalDetokenizer } from './detokenizer.ts';
import { detokenizerContext, generationPromptIds } from './detokenizer-context.ts';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import { localFolderSource } from '../model/source.ts';
import { testGpu } from '../../test/gpu.ts';
import { Engine } from './engine.ts';

const tokenizers = new Map<string, Promise<Tokenizer>>();
const tokenizer = (name: string) => {
  let t = tokenizers.get(name);
  if (!t) tokenizers.set(name, (t = loadTokenizer(localFolderSource(`public/models/${name}`))));
  return t;
};

/** Streams `gen` after `prompt` as EngineOutput does; the deltas, one per id, plus the flush. */
function stream(tok: Tokenizer, prompt: number[], gen: number[]): string[] {
  const d = new IncrementalDetokenizer(tok, [], detokenizerContext(tok, prompt));
  return [...gen.map((id) => d.push(id).delta), d.flush()];
}

/** Splits `text` into the prompt's ids and the ids after them (the continuation as the model would produce it). */
function split(tok: Tokenizer, prompt: string, rest: string): { prompt: number[]; gen: number[] } {
  const p = tok.encode(prompt);
  const all = tok.encode(prompt + rest);
  expect(all.slice(0, p.length)).toEqual(p); // the prompt's tokens are a prefix of the whole text's
  return { prompt: p, gen: all.slice(p.length) };
}

const difference = (tok: Tokenizer, prompt: number[], gen: number[]) => {
  const whole = tok.decode([...prompt, ...gen]);
  const head = tok.decode(prompt);
  expect(whole.startsWith(head)).toBe(true);
  return whole.slice(head.length);
};

describe.each([
  ['stories260K', 'SentencePiece-style: pieces, byte fallback, Strip'],
  ['tiny-vlm-shapes', 'byte-level BPE'],
])('%s (%s)', (name) => {
  it('a continuation streams decode(prompt + generated) − decode(prompt): the first space is kept', async () => {
    const tok = await tokenizer(name);
    const { prompt, gen } = split(tok, 'One day, a big dog', ' named Max ran to the park.');
    const deltas = stream(tok, prompt, gen);
    expect(deltas.join('')).toBe(difference(tok, prompt, gen));
    expect(deltas.join('')).toBe(' named Max ran to the park.');
    expect(deltas.find((d) => d)).toMatch(/^ named/);
  });

  it('a character split across tokens is never streamed as U+FFFD', async () => {
    const tok = await tokenizer(name);
    const { prompt, gen } = split(tok, 'She said', ' “hi” 😀 café ✓ 你好.');
    // the test is only worth something if some token is part of a character
    expect(gen.some((id) => tok.decode([id]).includes('\uFFFD'))).toBe(true);
    const deltas = stream(tok, prompt, gen);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas.join('')).toBe(difference(tok, prompt, gen));
    expect(deltas.join('')).toBe(' “hi” 😀 café ✓ 你好.');
  });

  it('a prompt ending inside a character (raw ids): the character streams once complete, never as U+FFFD', async () => {
    const tok = await tokenizer(name);
    const ids = tok.encode('Look: 😀 done', { addSpecialTokens: false });
    // cut the prompt inside the emoji: the first id whose decode alone is not a whole character
    const cut = ids.findIndex((id) => tok.decode([id]).includes('\uFFFD')) + 1;
    expect(cut).toBeGreaterThan(0);
    const deltas = stream(tok, ids.slice(0, cut), ids.slice(cut));
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas.join('')).toMatch(/^ ?😀 done$/); // the started character's bytes come with it
  });
});

describe('what a prompt gives as context', () => {
  it('a bare BOS gives none: the text starts the document (no leading space)', async () => {
    const tok = await tokenizer('stories260K');
    const gen = tok.encode('Once upon a time', { addSpecialTokens: false });
    expect(detokenizerContext(tok, [tok.bosTokenId!])).toEqual([]);
    expect(stream(tok, [tok.bosTokenId!], gen).join('')).toBe(tok.decode(gen));
    expect(stream(tok, [tok.bosTokenId!], gen).join('')).toMatch(/^Once upon a time$/);
  });

  it('a SentencePiece chat prompt (ends with "Assistant:") gives none: the answer starts without a space', async () => {
    const tok = await tokenizer('tiny-llama-gqa');
    const prompt = tok.applyChatTemplate([{ role: 'user', content: 'Where is the ball?' }]);
    expect(generationPromptIds(tok).length).toBeGreaterThan(0);
    expect(detokenizerContext(tok, prompt)).toEqual([]);
    const gen = tok.encode('Assistant: The ball is red.', { addSpecialTokens: false }).slice(tok.encode('Assistant:', { addSpecialTokens: false }).length);
    expect(tok.decode(gen.slice(0, 1))).toBe('The'); // "▁The": the space a decode of the prompt too would keep
    expect(stream(tok, prompt, gen).join('')).toBe('The ball is red.');
    // the same tokens as a raw-text continuation keep the space
    expect(stream(tok, tok.encode('The dog'), gen).join('')).toBe(' The ball is red.');
  });

  it('a byte-level VLM chat prompt (its template takes content parts) gives none; its answer is the ids decoded alone', async () => {
    const tok = await tokenizer('tiny-vlm-shapes');
    const gp = generationPromptIds(tok);
    expect(tok.decode(gp)).toMatch(/Assistant:$/);
    const prompt = [...tok.encode('<|im_start|>User: What is it?<end_of_utterance>\n', { addSpecialTokens: false }), ...gp];
    expect(detokenizerContext(tok, prompt)).toEqual([]);
    const gen = tok.encode(' A red circle.', { addSpecialTokens: false });
    expect(stream(tok, prompt, gen).join('')).toBe(tok.decode(gen));
  });
});

describe('through the engine (stories260K, tiny-llama-gqa; forced tokens)', () => {
  let stories: Engine;
  let chat: Engine;
  beforeAll(async () => {
    const gpu = await testGpu();
    stories = await Engine.load(gpu, localFolderSource('public/models/stories260K'), { kvPages: 16 });
    chat = await Engine.load(gpu, localFolderSource('public/models/tiny-llama-gqa'), { kvPages: 16 });
  });
  afterAll(async () => {
    await stories?.destroy();
    await chat?.destroy();
  });

  it('"One day, a big dog" + "▁named …": the streamed text and the result both start " named"', async () => {
    const tok = stories.tokenizer;
    const { prompt, gen } = split(tok, 'One day, a big dog', ' named Max. 😀');
    const chunks: string[] = [];
    const r = await stories.generate('One day, a big dog', { maxTokens: gen.length, forceTokens: gen, ignoreEos: true, onToken: (c) => chunks.push(c.text) });
    expect(r.tokens).toEqual(gen);
    expect(chunks.join('')).toBe(difference(tok, prompt, gen));
    expect(chunks.join('')).toBe(' named Max. 😀');
    expect(r.text).toBe(' named Max. 😀');
    for (const c of chunks) expect(c).not.toContain('\uFFFD');
  });

  it('a chat answer after "Assistant:" starts without a space', async () => {
    const tok = chat.tokenizer;
    const gen = tok.encode('Assistant: The ball.', { addSpecialTokens: false }).slice(tok.encode('Assistant:', { addSpecialTokens: false }).length);
    const r = await chat.generate([{ role: 'user', content: 'Where is the ball?' }], { maxTokens: gen.length, forceTokens: gen, ignoreEos: true });
    expect(r.text).toBe('The ball.');
  });
});
