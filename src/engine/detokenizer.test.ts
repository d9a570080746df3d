import { describe, expect, it } from 'vitest';
import { IncrementalDetokenizer } from './detokenizer.ts';

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
