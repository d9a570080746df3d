/**
 * The vocabulary written into the peers' GGUF files: token i (i ≥ 1) is the
 * one character U+10000 + i, token 0 is <unk> (the copies' end of sequence).
 *
 * wllama takes a prompt only as text, which llama.cpp tokenizes with the
 * file's vocabulary. With one character per token and no token of two
 * characters, no merge applies, so the text of a list of ids tokenizes back to
 * exactly those ids, and each generated token's text names its id. (No byte
 * tokens and no "</s>" piece, which llama.cpp would take as a second end of
 * sequence.) The benchmark feeds ids, so the model's real pieces do not matter.
 */
const BASE = 0x10000;

export function codepointPieces(size: number): string[] {
  return Array.from({ length: size }, (_, i) => (i === 0 ? '<unk>' : String.fromCodePoint(BASE + i)));
}

export function idsToText(ids: readonly number[]): string {
  return ids.map((id) => {
    if (!Number.isInteger(id) || id < 1) throw new Error(`token id ${id} has no text in the peers' vocabulary (ids ≥ 1)`);
    return String.fromCodePoint(BASE + id);
  }).join('');
}

export function textToIds(text: string): number[] {
  return Array.from(text, (ch) => {
    const id = ch.codePointAt(0)! - BASE;
    if (id < 1) throw new Error(`generated text ${JSON.stringify(ch)} is not a token of the peers' vocabulary`);
    return id;
  });
}
