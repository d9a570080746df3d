import { describe, expect, it } from 'vitest';
import { CONTEXT_TOKENS, IncrementalDetokenizer } from './detokenizer.ts';

// A toy decoder: id -> piece.
const pieces = ['Once', ' upon', ' a', ' time', ' END', 'ing', '\uFFFD'];
const decoder = { decode: (ids: number[]) => ids.map((i) => pieces[i]).join('') };

describe('IncrementalDetokenizer', () => {
  it('streams deltas that add up to the full text', () => {
    const d = new IncrementalDetokenizer(decoder);
    const out = [0, 1, 2, 3].map((i) => d.push(i).delta).join('') + d.flush();
    expect(out).toBe('Once upon a time');
  });

  it('stops at a stop string and never emits it', () => {
    const d = new IncrementalDetokenizer(decoder, [' END']);
    let text = '';
    let stop: string | null = null;
    for (const i of [0, 1, 4, 2]) {
      const s = d.push(i);
      text += s.delta;
      if (s.stop) { stop = s.stop; break; }
    }
    expect(stop).toBe(' END');
    expect(text + d.flush()).toBe('Once upon');
  });

  it('holds back a possible stop-string prefix until it is settled', () => {
    const d = new IncrementalDetokenizer(decoder, [' upon a']);
    expect(d.push(0).delta).toBe('Once');
    expect(d.push(1).delta).toBe(''); // ' upon' could begin ' upon a'
    const s = d.push(2);
    expect(s.stop).toBe(' upon a');
    expect(s.delta).toBe('');
  });

  it('holds back an unfinished character', () => {
    const d = new IncrementalDetokenizer(decoder);
    expect(d.push(0).delta).toBe('Once');
    expect(d.push(6).delta).toBe('');
  });

  it('rejects an empty stop string', () => {
    expect(() => new IncrementalDetokenizer(decoder, [''])).toThrow(/must not be empty/);
  });
});

// A toy SentencePiece-style decoder: '_' is a space, and the decode's leading space is stripped (Llama's Strip decoder).
const sp = ['_One', '_day', '_named', '_Max', '.', '<s>', 'Assistant:'];
const spDecoder = { decode: (ids: number[]) => ids.map((i) => sp[i]).join('').replaceAll('_', ' ').replace(/^ /, '') };
// A toy byte decoder: ids are UTF-8 bytes, decoded as TextDecoder does (U+FFFD for an unfinished character).
const bytesDecoder = { decode: (ids: number[]) => new TextDecoder().decode(new Uint8Array(ids)) };

describe('IncrementalDetokenizer with the prompt as context', () => {
  it('keeps the first generated token\'s leading space: decode(prompt + gen) − decode(prompt)', () => {
    const alone = new IncrementalDetokenizer(spDecoder);
    expect(alone.push(2).delta).toBe('named'); // the bug: "dognamed"
    const d = new IncrementalDetokenizer(spDecoder, [], [0, 1]);
    const out = [2, 3, 4].map((i) => d.push(i).delta).join('') + d.flush();
    expect(out).toBe(' named Max.');
    expect(d.fullText).toBe(' named Max.');
  });

  it('uses only the last few ids of a long prompt', () => {
    const calls: number[] = [];
    const counting = { decode: (ids: number[]) => (calls.push(ids.length), spDecoder.decode(ids)) };
    const d = new IncrementalDetokenizer(counting, [], Array.from({ length: 1000 }, (_, i) => i % 2));
    expect(d.push(2).delta).toBe(' named');
    expect(Math.max(...calls)).toBeLessThanOrEqual(CONTEXT_TOKENS + 1);
  });

  it('stop strings apply to the generated text only', () => {
    const d = new IncrementalDetokenizer(spDecoder, ['day'], [0, 1]); // the prompt's 'day' does not stop it
    expect(d.push(2)).toEqual({ delta: ' name', stop: null }); // 'd' could begin 'day'
    expect(d.flush()).toBe('d');
  });

  it('holds back every U+FFFD of an unfinished character, with or without context', () => {
    const euro = [...new TextEncoder().encode('€!')]; // 3 bytes + '!'
    for (const context of [[], [...new TextEncoder().encode('a')]]) {
      const d = new IncrementalDetokenizer(bytesDecoder, [], context);
      const deltas = euro.map((b) => d.push(b).delta);
      expect(deltas).toEqual(['', '', '€', '!']);
    }
  });

  it('a context ending inside a character: the character streams whole once complete', () => {
    const smile = [...new TextEncoder().encode('😀')];
    const d = new IncrementalDetokenizer(bytesDecoder, [], [0x61, ...smile.slice(0, 2)]);
    expect([d.push(smile[2]).delta, d.push(smile[3]).delta, d.push(0x21).delta]).toEqual(['', '😀', '!']);
  });
});
