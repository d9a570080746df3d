/**
 * Golden test on a real trained model: stories260K greedy from BOS must reproduce llama2.c's
 * run.c token for token (reference_greedy.json), and the tokenizer must turn those ids into
 * its text.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from './loader.ts';
import { ReferenceModel } from './reference.ts';
import { localFolderSource } from './source.ts';

const dir = resolve('public/models/stories260K');
const golden = JSON.parse(readFileSync(resolve(dir, 'reference_greedy.json'), 'utf8')) as { prompt_ids: number[]; ids: number[]; text: string };

let model: LoadedModel;
beforeAll(async () => {
  model = await loadModel(localFolderSource(dir));
});

describe('stories260K', () => {
  it('loads: Llama, tied embeddings, GQA 8:4, F32 weights', () => {
    expect(model.config).toMatchObject({ architecture: 'llama', numLayers: 5, numHeads: 8, numKvHeads: 4, headDim: 8, tieWordEmbeddings: true });
    expect(model.weights.size).toBe(2 + 5 * 9);
    expect(model.weights.get('model.embed_tokens.weight')!.dtype).toBe('f32');
    expect(model.config.eosTokenIds).toEqual([2]);
    expect(model.generationConfig).toMatchObject({ bos_token_id: 1, eos_token_id: 2 });
  });

  it('greedy from BOS reproduces llama2.c exactly (120 tokens), with f32 and with f16 KV', () => {
    const want = golden.ids.slice(golden.prompt_ids.length);
    expect(want.length).toBe(120);
    expect(new ReferenceModel(model.config, model.weights).greedy(golden.prompt_ids, 120)).toEqual(want);
    expect(new ReferenceModel(model.config, model.weights, { kvDtype: 'f16' }).greedy(golden.prompt_ids, 120)).toEqual(want);
  });

  it('decodes the ids to the reference text (run.c prints one extra "\\n" at the end)', () => {
    const tok = model.tokenizer;
    const newIds = golden.ids.slice(golden.prompt_ids.length);
    // run.c ends its output with printf("\n"); the 120 tokens themselves end in "▁but".
    expect(golden.text.endsWith('but\n')).toBe(true);
    expect(tok.decode(newIds)).toBe(golden.text.slice(0, -1));
    // The leading "▁" of the first piece ("▁Once") is stripped by the decoder, as sentencepiece does.
    expect(tok.decode(golden.ids, { skipSpecialTokens: true })).toBe(golden.text.slice(0, -1));
    expect(tok.decode(golden.ids)).toBe('<s> ' + golden.text.slice(0, -1));
  });

  it('encodes the reference text back to the same ids, and round-trips other text', () => {
    const tok = model.tokenizer;
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenIds).toEqual([2]);
    expect(tok.vocabSize).toBe(512);
    expect(tok.encode(golden.text.slice(0, -1))).toEqual(golden.ids);
    expect(tok.encode(golden.text.slice(0, -1), { addSpecialTokens: false })).toEqual(golden.ids.slice(1));
    for (const text of ['Hello world!', 'Tom and Mia went to the park.\nThey saw a dog.', 'naïve café 你好 🙂', '  two  spaces ']) {
      const ids = tok.encode(text);
      expect(ids[0]).toBe(1);
      expect(Math.max(...ids)).toBeLessThan(512);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    }
  });

  it('has no chat template: applyChatTemplate encodes the plain text', () => {
    expect(model.tokenizer.hasChatTemplate).toBe(false);
    expect(model.tokenizer.applyChatTemplate([{ role: 'user', content: 'Once upon a time' }])).toEqual(model.tokenizer.encode('Once upon a time'));
  });
});
