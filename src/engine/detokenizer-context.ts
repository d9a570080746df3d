/**
 * Which prompt ids the streaming detokenizer decodes the generated ids after
 * (IncrementalDetokenizer's context), so that a continued prompt keeps the
 * first generated token's leading space while a chat answer does not gain one.
 *
 * - A continuation (a text prompt, or ids): the prompt's tail, so the text is
 *   decode(prompt + generated) − decode(prompt), special tokens of the prompt
 *   aside: a leading BOS is not text, and a prompt of BOS alone gives no
 *   context — the generated text starts the document, and a SentencePiece
 *   decoder rightly strips its first space ("Once upon", not " Once upon").
 * - A chat prompt (it ends with the chat template's generation prompt,
 *   "Assistant:" or "<|im_start|>assistant\n"): none. The space a SentencePiece
 *   model emits after "Assistant:" separates the header from the answer; the
 *   answer is the generated ids decoded alone, as transformers' chat pipelines
 *   do. (A byte-level BPE decodes the same either way.)
 */
import type { Tokenizer } from '../model/tokenizer.ts';

type ContextTokenizer = Pick<Tokenizer, 'decode'> & Partial<Pick<Tokenizer, 'applyChatTemplate' | 'hasChatTemplate' | 'bosTokenId'>>;

const generationPrompts = new WeakMap<object, number[]>();

/** The ids the chat template appends for add_generation_prompt ([] without a template, or when it cannot tell). */
export function generationPromptIds(tok: ContextTokenizer): number[] {
  let ids = generationPrompts.get(tok);
  if (ids) return ids;
  ids = [];
  if (tok.hasChatTemplate && tok.applyChatTemplate) {
    // templates that iterate over content parts (VLMs) take parts; plain ones take a string
    const contents: unknown[] = ['x', [{ type: 'text', text: 'x' }]];
    for (const content of contents) {
      try {
        const messages = [{ role: 'user', content: content as string }];
        const withPrompt = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
        const without = tok.applyChatTemplate(messages, { addGenerationPrompt: false });
        let same = 0;
        while (same < without.length && withPrompt[same] === without[same]) same++;
        ids = withPrompt.slice(same);
        break;
      } catch {
        // this template wants the other shape of content
      }
    }
  }
  generationPrompts.set(tok, ids);
  return ids;
}

/** The context for a request whose prompt is `promptIds` ([] for none). */
export function detokenizerContext(tok: ContextTokenizer, promptIds: readonly number[]): number[] {
  const gen = generationPromptIds(tok);
  if (gen.length && promptIds.length >= gen.length && gen.every((id, i) => promptIds[promptIds.length - gen.length + i] === id)) return [];
  const start = tok.bosTokenId !== undefined && promptIds[0] === tok.bosTokenId ? 1 : 0;
  return promptIds.slice(start);
}
