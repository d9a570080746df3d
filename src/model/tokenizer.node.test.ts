/**
 * loadTokenizer on the tiny models' template and on SmolVLM-256M-Instruct's real tokenizer
 * files (GPT2Tokenizer class, chat template in tokenizer_config.json or chat_template.json).
 */
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { localFolderSource } from './source.ts';
import { loadTokenizer } from './tokenizer.ts';

const smolvlm = '/work/shared/models/smolvlm-256m-instruct-files';

describe('loadTokenizer', () => {
  it('tiny model: chat template with and without the generation prompt; extra EOS ids', async () => {
    const tok = await loadTokenizer(localFolderSource(resolve('public/models/tiny-qwen2')), { eosTokenIds: [2, 7] });
    expect(tok.hasChatTemplate).toBe(true);
    expect(tok.eosTokenIds).toEqual([2, 7]);
    const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
    expect(tok.decode(tok.applyChatTemplate(msgs))).toBe('<s> System: Be brief.\nUser: Hi\nAssistant:');
    expect(tok.decode(tok.applyChatTemplate(msgs, { addGenerationPrompt: false }))).toBe('<s> System: Be brief.\nUser: Hi\n');
    expect(tok.applyChatTemplate(msgs).filter((id) => id === 1)).toHaveLength(1); // one BOS, from the template
    expect(tok.decode([])).toBe('');
  });

  it.skipIf(!existsSync(smolvlm))('SmolVLM-256M-Instruct real files: vocab, special tokens, round trip', async () => {
    const tok = await loadTokenizer(localFolderSource(smolvlm));
    expect(tok.vocabSize).toBe(49280);
    expect(tok.eosTokenIds).toEqual([49279]); // <end_of_utterance>
    expect(tok.bosTokenId).toBe(1); // <|im_start|>
    expect(tok.hasChatTemplate).toBe(true);
    const text = 'Can you describe this image? It has 2 cats.';
    const ids = tok.encode(text);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    expect(tok.encode('<end_of_utterance>', { addSpecialTokens: false })).toEqual([49279]);
  });

  it.skipIf(!existsSync(smolvlm))('reads chat_template.json when tokenizer_config.json has no template', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fastcache-tok-'));
    try {
      await cp(smolvlm, dir, { recursive: true });
      const cfgPath = join(dir, 'tokenizer_config.json');
      const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
      delete cfg.chat_template;
      await writeFile(cfgPath, JSON.stringify(cfg));
      const tok = await loadTokenizer(localFolderSource(dir));
      expect(tok.hasChatTemplate).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
