/**
 * Pieces of the request fuzzers (src/engine/requests.fuzz.node.test.ts,
 * src/server/requests.fuzz.node.test.ts): hostile text, chat messages of
 * every wrong shape, OpenAI request fields with wrong types and out-of-range
 * values, and the checks that an outcome is "a clear error or a normal
 * answer, never a stuck request".
 */
import fc from 'fast-check';

/** Messages of JS's own errors: input the code did not check, reaching something that crashed on it. */
const CRASH = /cannot read propert|cannot set propert|is not a function|is not iterable|is not defined|is not an object|undefined is not|null is not|cannot convert|invalid array length|maximum call stack|cannot destructure|cannot use 'in'|is not a constructor|invalid typed array length|offset is outside|out of memory|\[object Object\]/i;

/** The error a case ended with, if it is a clear one; throws (failing the property) on a crash or a non-Error. */
export function clearError(e: unknown): Error {
  if (!(e instanceof Error)) throw new Error(`threw a non-Error: ${String(e)}`);
  if (!e.message.trim() || CRASH.test(e.message)) throw new Error(`crashed instead of a clear error: ${e.name}: ${e.message}`);
  return e;
}

/** `p`'s value or its error, failing when it has not settled after `ms` (a stuck request). */
export async function settle<T>(p: Promise<T>, what: string, ms = 30_000): Promise<{ ok: T } | { err: Error }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`stuck: ${what} has not settled after ${ms} ms`)), ms)));
  try {
    return { ok: await Promise.race([p, stuck]) };
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('stuck: ')) throw e;
    return { err: clearError(e) };
  } finally {
    clearTimeout(timer);
  }
}

/** UTF-16 strings of any code units: lone surrogates, NUL and other controls, BOMs, RTL marks. */
const codeUnits = fc.array(fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0xfeff, 0x200e, 0x202e, 0xfffd, 0x7f)), { maxLength: 60 })
  .map((cs) => String.fromCharCode(...cs));
/** What chat templates and tokenizers treat specially. */
const specials = fc.constantFrom('<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<image>', '<fake_token_around_image>', '{{ messages }}', '{% for %}', '\\u0000', '\r\n', '\u2028', '🐈‍⬛', 'e\u0301', '');

/** Prompt text: plain, any code points, any code units, special tokens spliced in, and now and then 1k–100k characters. */
export const hostileText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 4, arbitrary: codeUnits },
  { weight: 3, arbitrary: fc.array(fc.oneof(specials, fc.string({ maxLength: 8 })), { maxLength: 8 }).map((xs) => xs.join('')) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(codeUnits, specials, fc.string({ minLength: 1, maxLength: 10 })), fc.integer({ min: 1000, max: 100_000 })).map(([s, n]) => (s || 'a').repeat(Math.ceil(n / (s.length || 1))).slice(0, n)) },
);

const role = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('system', 'user', 'assistant') }, { weight: 1, arbitrary: fc.oneof(fc.constantFrom('tool', 'developer', 'function', 'User', ''), fc.anything()) });
const imageUrl = fc.oneof(
  fc.constantFrom('data:image/png;base64,AAAA', 'data:image/png;base64,', 'data:text/html,<script>1</script>', 'data:,', 'http://127.0.0.1:9/x.png', 'blob:nothing', 'javascript:alert(1)', '/etc/passwd', ''),
  fc.string({ maxLength: 40 }),
  fc.anything(),
);
const part = fc.oneof(
  { weight: 3, arbitrary: fc.record({ type: fc.constant('text'), text: fc.oneof(hostileText, fc.anything()) }, { requiredKeys: ['type'] }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('image_url'), image_url: fc.oneof(imageUrl, fc.record({ url: imageUrl }, { requiredKeys: [] })) }, { requiredKeys: ['type'] }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('image'), image: fc.anything() }, { requiredKeys: ['type'] }) },
  { weight: 1, arbitrary: fc.record({ type: fc.oneof(fc.constantFrom('audio', 'input_text', 'TEXT'), fc.anything()), text: fc.anything() }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.anything() },
);
const content = fc.oneof({ weight: 3, arbitrary: hostileText }, { weight: 2, arbitrary: fc.array(part, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.anything() });
const message = fc.oneof(
  { weight: 6, arbitrary: fc.record({ role, content }) },
  { weight: 2, arbitrary: fc.record({ role, content, name: fc.anything(), tool_calls: fc.anything() }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.anything() },
);
/** `messages`: arrays of good and bad messages, or not an array at all. */
export const hostileMessages: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.array(message, { maxLength: 5 }) }, { weight: 1, arbitrary: fc.anything() });

/** Wrong and edge values of every ChatCompletionRequest field (besides anything at all, which the caller mixes in). */
export const FIELD_VALUES: Record<string, fc.Arbitrary<unknown>> = {
  model: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', '../x', 'gpt-4')),
  stream: fc.oneof(fc.boolean(), fc.constantFrom('true', 1, 0, null)),
  max_tokens: fc.oneof(fc.integer({ min: -3, max: 4 }), fc.constantFrom(0, 1.5, -1, NaN, Infinity, 2 ** 31, 2 ** 53, '3', null, 1e9)),
  temperature: fc.oneof(fc.double({ min: -1, max: 3 }), fc.constantFrom(NaN, Infinity, -0, '0.5', null, [1], true)),
  top_p: fc.oneof(fc.double({ min: -1, max: 2 }), fc.constantFrom(NaN, 0, '1', null, {})),
  top_k: fc.oneof(fc.integer({ min: -5, max: 100 }), fc.constantFrom(1.5, NaN, 2 ** 40, '4', null)),
  seed: fc.oneof(fc.integer(), fc.constantFrom(-1, 1.5, NaN, 2 ** 64, 'abc', null, {}, [])),
  stop: fc.oneof(fc.string({ maxLength: 6 }), fc.array(fc.string({ maxLength: 4 }), { maxLength: 5 }), fc.constantFrom('', [''], 5, [5], null, {}), fc.array(fc.string(), { minLength: 10, maxLength: 20 })),
  ignore_eos: fc.oneof(fc.boolean(), fc.constantFrom('yes', 1, null)),
  request_id: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', 5, null, 'x'.repeat(300)), codeUnits),
  kv_compression: fc.oneof(
    fc.record({ press: fc.oneof(fc.constantFrom('knorm', 'snapkv', 'streaming-llm', 'tova', 'h2o', 'nope', ''), fc.anything()), ratio: fc.oneof(fc.double({ min: -1, max: 2 }), fc.anything()), window: fc.anything() }, { requiredKeys: [] }),
    fc.constantFrom('knorm', 5, null, []),
  ),
  kv_window: fc.oneof(fc.record({ sinks: fc.oneof(fc.integer({ min: -4, max: 40 }), fc.anything()), recent: fc.oneof(fc.integer({ min: -4, max: 200 }), fc.anything()) }, { requiredKeys: [] }), fc.constantFrom(5, 'x', null)),
  cache_prefix: fc.oneof(
    fc.record({ until: fc.oneof(fc.constantFrom('image', 'system', 0, 3, -1, 1e9, 'all'), fc.anything()), press: fc.oneof(fc.constantFrom('knorm', 'snapkv', 'nope'), fc.anything()), ratio: fc.oneof(fc.double({ min: -1, max: 2 }), fc.anything()) }, { requiredKeys: [] }),
    fc.constantFrom('system', 5, null),
  ),
};

const PRESSES = ['knorm', 'snapkv', 'streaming-llm', 'tova', 'h2o', 'expected-attention', 'sliding-window', 'observed-attention'];
/** Values a request may well carry, so that wrong ones meet working ones (and streams run long enough to be left). */
const VALID_VALUES: Record<string, fc.Arbitrary<unknown>> = {
  stream: fc.boolean(),
  max_tokens: fc.integer({ min: 1, max: 4 }),
  temperature: fc.double({ min: 0, max: 2, noNaN: true }),
  top_p: fc.double({ min: 0.01, max: 1, noNaN: true }),
  top_k: fc.integer({ min: 0, max: 50 }),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
  stop: fc.oneof(fc.string({ minLength: 1, maxLength: 3 }), fc.array(fc.string({ minLength: 1, maxLength: 3 }), { maxLength: 3 })),
  ignore_eos: fc.boolean(),
  request_id: fc.uuid(),
  kv_compression: fc.record({ press: fc.constantFrom(...PRESSES), ratio: fc.double({ min: 0, max: 0.9, noNaN: true }) }),
  kv_window: fc.record({ sinks: fc.integer({ min: 0, max: 4 }), recent: fc.integer({ min: 8, max: 64 }) }),
  cache_prefix: fc.record({ until: fc.integer({ min: 2, max: 8 }), press: fc.constantFrom(...PRESSES), ratio: fc.constantFrom(0, 0.25, 0.5) }),
};

/** One to three fields of a request set to wrong values, anything at all, or valid ones. */
export const fieldOverrides: fc.Arbitrary<Record<string, unknown>> = fc
  .uniqueArray(fc.constantFrom(...Object.keys(FIELD_VALUES)), { minLength: 1, maxLength: 3 })
  .chain((keys) =>
    fc.tuple(...keys.map((k) => fc.oneof({ weight: 3, arbitrary: FIELD_VALUES[k] }, { weight: 1, arbitrary: fc.anything() }, { weight: 3, arbitrary: VALID_VALUES[k] ?? FIELD_VALUES[k] })))
      .map((vs) => Object.fromEntries(keys.map((k, i) => [k, vs[i]]))),
  );

/** Outcomes of one property's cases, for its log line (and the closing note's table). */
export class Tally {
  private readonly n = new Map<string, number>();
  add(outcome: string): void {
    this.n.set(outcome, (this.n.get(outcome) ?? 0) + 1);
  }
  toString(): string {
    return [...this.n].map(([k, v]) => `${k} ${v}`).join(', ');
  }
}
