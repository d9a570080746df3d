/**
 * The GGUF writer, the q/k row order and the wllama adapter together, against
 * llama2.c: stories260K written as GGUF in the page, loaded by wllama
 * (llama.cpp in wasm), decodes the reference greedy ids from BOS.
 */
import { expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config.ts';
import { parseSafetensors } from '../../src/model/safetensors.ts';
import { codepointVocab, llamaGguf } from './llama-gguf.ts';
import { WllamaRuntime } from './wllama.ts';

it("stories260K as GGUF in wllama decodes llama2.c's greedy ids (40 tokens from BOS)", async () => {
  const get = async (f: string) => new Uint8Array(await (await fetch(`/models/stories260K/${f}`)).arrayBuffer());
  const file = await get('model.safetensors');
  const config = parseConfig(JSON.parse(new TextDecoder().decode(await get('config.json'))));
  const ref = JSON.parse(new TextDecoder().decode(await get('reference_greedy.json'))) as { ids: number[] };
  const chunks = llamaGguf('stories260K', config, file, parseSafetensors(file), codepointVocab(config.vocabSize));
  const rt = new WllamaRuntime(false, () => {});
  try {
    await rt.loadBlob(new Blob(chunks as BlobPart[]));
    const run = await rt.generate([1], 40);
    expect(run.ids).toEqual(ref.ids.slice(1, 41));
  } finally {
    await rt.close();
  }
});
