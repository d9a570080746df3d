/** The JSON files of a model folder (config.json, tokenizer_config.json, the shard index, …). */

/**
 * A model JSON file's object. Every JSON file of a model (config, generation config, shard
 * index, tokenizer and processor configs) holds one; `null`, a number or an array there would
 * otherwise fail later as a TypeError that names no file.
 */
export function parseJsonObject(bytes: Uint8Array, file: string, where: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${where}: ${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${where}: ${file} must hold a JSON object, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : `a ${typeof json}`}`);
  }
  return json as Record<string, unknown>;
}
