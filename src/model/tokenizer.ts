/**
 * Tokenizer: @huggingface/transformers' PreTrainedTokenizer built from the JSON files read
 * through a ModelSource — nothing is fetched by transformers itself.
 */
import { parseJsonObject } from './model-json.ts';
import type { ModelSource } from './source.ts';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface Tokenizer {
  /** Text → ids; addSpecialTokens (default true) adds what the tokenizer's post-processor adds (e.g. BOS). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Ids → text; skipSpecialTokens defaults to false. */
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /**
   * Messages → prompt ids through the chat template (whose text supplies any BOS).
   * addGenerationPrompt defaults to TRUE (the prompt ends where the assistant's reply starts).
   * Without a chat template (a base model such as stories260K) the contents are joined with
   * "\n" and encoded with special tokens: the model simply continues the text.
   */
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean }): number[];
  readonly eosTokenIds: number[];
  readonly bosTokenId?: number;
  /** Number of entries in the vocabulary, added tokens included. */
  readonly vocabSize: number;
  readonly hasChatTemplate: boolean;
  /** The transformers.js tokenizer itself, for a transformers.js processor to wrap (src/model/multimodal-processor.ts). */
  readonly hf: unknown;
}

/** The subset of transformers' PreTrainedTokenizer used here. */
interface HfTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): number[];
  decode(ids: number[], opts: { skip_special_tokens: boolean }): string;
  apply_chat_template(messages: ChatMessage[], opts: Record<string, unknown>): unknown;
  get_vocab(): Map<string, number>;
  chat_template: unknown;
  bos_token_id?: number;
  eos_token_id?: number;
}

type Json = Record<string, unknown>;

/**
 * Read tokenizer.json (required), tokenizer_config.json, and a chat template from
 * chat_template.jinja or chat_template.json when tokenizer_config.json has none.
 * `eosTokenIds` adds stop ids (e.g. generation_config's) after the tokenizer's own eos_token.
 */
export async function loadTokenizer(source: ModelSource, opts: { eosTokenIds?: number[] } = {}): Promise<Tokenizer> {
  const where = `model ${source.id}`;
  const readJson = async (file: string) => parseJsonObject(await source.readFile(file), file, where);
  const [tokenizerJson, tokenizerConfig] = await Promise.all([
    source.readFile('tokenizer.json').then(
      (bytes) => parseJsonObject(bytes, 'tokenizer.json', where),
      (e: Error) => {
        throw new Error(`${where}: cannot load tokenizer.json: ${e.message}`);
      },
    ),
    source.has('tokenizer_config.json').then((ok): Promise<Json> | Json => (ok ? readJson('tokenizer_config.json') : {})),
  ]);
  let template = '';
  if (tokenizerConfig.chat_template == null) {
    if (await source.has('chat_template.jinja')) {
      tokenizerConfig.chat_template = new TextDecoder().decode(await source.readFile('chat_template.jinja'));
      template = ', chat_template.jinja';
    } else if (await source.has('chat_template.json')) {
      tokenizerConfig.chat_template = (await readJson('chat_template.json')).chat_template;
      template = ', chat_template.json';
    }
  }
  try {
    return await tokenizerFromJson(tokenizerJson, tokenizerConfig, opts);
  } catch (e) {
    // transformers.js says what it missed ("Tokenizer must contain a \"model\" property") but not where.
    throw new Error(`${where}: cannot build the tokenizer from tokenizer.json, tokenizer_config.json${template}: ${(e as Error).message}`);
  }
}

/** Build a Tokenizer from the parsed tokenizer.json and tokenizer_config.json. */
export async function tokenizerFromJson(tokenizerJson: Json, tokenizerConfig: Json, opts: { eosTokenIds?: number[] } = {}): Promise<Tokenizer> {
  const hf = (await import('@huggingface/transformers')) as unknown as Record<string, unknown>;
  const base = hf.PreTrainedTokenizer as new (j: Json, c: Json) => HfTokenizer;
  // Like AutoTokenizer: the class named by tokenizer_class (minus "Fast"), else the base class.
  const name = typeof tokenizerConfig.tokenizer_class === 'string' ? tokenizerConfig.tokenizer_class.replace(/Fast$/, '') : '';
  const named = hf[name];
  const cls = typeof named === 'function' && named.prototype instanceof base ? (named as typeof base) : base;
  return new HfTokenizerAdapter(new cls(tokenizerJson, tokenizerConfig), opts.eosTokenIds ?? []);
}

class HfTokenizerAdapter implements Tokenizer {
  readonly eosTokenIds: number[];
  readonly bosTokenId?: number;
  readonly vocabSize: number;
  readonly hasChatTemplate: boolean;

  get hf(): unknown {
    return this.tok;
  }

  constructor(private readonly tok: HfTokenizer, extraEos: number[]) {
    this.eosTokenIds = [...new Set([...(tok.eos_token_id != null ? [tok.eos_token_id] : []), ...extraEos])];
    if (tok.bos_token_id != null) this.bosTokenId = tok.bos_token_id;
    let maxId = -1;
    for (const id of tok.get_vocab().values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.hasChatTemplate = tok.chat_template != null;
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): number[] {
    if (!this.hasChatTemplate) return this.encode(messages.map((m) => m.content).join('\n'));
    const ids = this.tok.apply_chat_template(messages, {
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      tokenize: true,
      return_tensor: false,
      return_dict: false,
    });
    if (!Array.isArray(ids)) throw new Error('applyChatTemplate: the tokenizer returned no id list');
    return ids as number[];
  }
}
