// Tokenize strings with the REAL SmolVLM-256M-Instruct tokenizer (transformers.js, offline).
// usage: node train/tokenize.mjs IN.json OUT.json   (IN: {"strings": [...]} -> OUT: {"ids": [[...], ...]})
// Strings are encoded with add_special_tokens=false (the SmolVLM tokenizer adds no BOS anyway:
// "<|im_start|>" (id 1) comes from the chat template text).
import { AutoTokenizer, env } from '@huggingface/transformers';
import fs from 'node:fs';
env.localModelPath = process.env.SMOLVLM_DIR_PARENT ?? '/work/shared/models/';
env.allowRemoteModels = false;
const tok = await AutoTokenizer.from_pretrained('smolvlm-256m-instruct-files');
const { strings } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ids = strings.map((s) => tok.encode(s, { add_special_tokens: false }));
const withSpecial = strings.slice(0, 3).map((s) => tok.encode(s));
fs.writeFileSync(process.argv[3], JSON.stringify({ ids, check_add_special_tokens_true: withSpecial }));
console.log(`tokenized ${strings.length} strings`);
