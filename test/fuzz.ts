/**
 * Settings shared by the property-based fuzz tests (src/**\/*.fuzz.node.test.ts, docs/fuzzing.md).
 *
 *   FUZZ_RUNS=<n>      cases per property (default 1000: what CI runs in a few seconds)
 *   FUZZ_SEED=<int>    the seed (default a fixed one, so CI is reproducible); "random" for a new
 *                      one per run — a failure prints the seed and path that replay it
 *
 * e.g. FUZZ_RUNS=200000 FUZZ_SEED=random npx vitest run --project node src/model/safetensors.fuzz.node.test.ts
 */
import fc from 'fast-check';

const DEFAULT_RUNS = 1000;
const DEFAULT_SEED = 0x5afe7e;

function envRuns(): number {
  const raw = process.env.FUZZ_RUNS;
  if (raw === undefined || raw === '') return DEFAULT_RUNS;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`FUZZ_RUNS must be a positive integer, got "${raw}"`);
  return n;
}

function envSeed(): number {
  const raw = process.env.FUZZ_SEED;
  if (raw === undefined || raw === '') return DEFAULT_SEED;
  if (raw === 'random') return (Math.random() * 2 ** 31) | 0;
  const n = Number(raw);
  // fast-check seeds are 32-bit integers; anything else would be silently truncated.
  if (!Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 32) throw new Error(`FUZZ_SEED must be a 32-bit integer or "random", got "${raw}"`);
  return n;
}

export const FUZZ_RUNS = envRuns();
export const FUZZ_SEED = envSeed();

/**
 * fast-check parameters for one property: FUZZ_RUNS cases from FUZZ_SEED. Every property uses
 * FUZZ_SEED itself, so the seed a failure prints is the one to set to replay it.
 */
export function fuzzParams<T>(extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  return { numRuns: FUZZ_RUNS, seed: FUZZ_SEED, ...extra };
}

/**
 * Runs `fn` and returns what it threw, or null. For properties that accept "an Error naming the
 * problem, or a valid result": anything thrown that is not a plain Error (a TypeError from
 * reading a property of null, a RangeError from a typed-array constructor) is the parser
 * crashing on input it did not check, and fails the property.
 */
export function thrown(fn: () => unknown): Error | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (!(e instanceof Error) || Object.getPrototypeOf(e) !== Error.prototype) {
      throw new Error(`expected a plain Error naming the problem, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    return e;
  }
}

/** Async thrown(). */
export async function rejected(fn: () => Promise<unknown>): Promise<Error | null> {
  try {
    await fn();
    return null;
  } catch (e) {
    if (!(e instanceof Error) || Object.getPrototypeOf(e) !== Error.prototype) {
      throw new Error(`expected a plain Error naming the problem, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    return e;
  }
}
