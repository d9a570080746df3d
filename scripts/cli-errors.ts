/**
 * How every CLI (chat, generate, serve, bench) fails: one line on stderr,
 * `error: <message>`, and a non-zero exit — 2 for a usage error (a bad or
 * unknown flag, a missing argument), 1 for anything that went wrong while
 * running (a missing folder, a model that does not load, a browser that does
 * not start). A stack trace only with --verbose or DEBUG set: a user who
 * mistyped a flag needs the flag's name, not our call stack.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake on the command line: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** --verbose anywhere on the command line, or DEBUG in the environment. */
export function verbose(argv: readonly string[] = process.argv): boolean {
  return argv.includes('--verbose') || !!process.env.DEBUG;
}

/**
 * An error's message on one line: Playwright's "page.evaluate: Error: "
 * prefix, its call log and the page's stack frames dropped, the remaining
 * lines joined (an engine message listing choices over lines stays whole).
 */
export function oneLine(e: unknown): string {
  let msg = e instanceof Error ? e.message : e && typeof e === 'object' && 'message' in e ? String(e.message) : String(e);
  msg = msg.split(/\n\s*(?:Call log:|=+ logs =+)/)[0];
  const lines = msg.split('\n').filter((l) => !/^\s*at\s/.test(l) && l.trim() !== '');
  msg = lines.join(' ').replace(/\s+/g, ' ').trim();
  msg = msg.replace(/^(?:(?:page|frame|browserContext|browserType|locator|elementHandle)\.\w+: )?(?:\w*Error: )?/, '');
  return msg || (e instanceof Error ? e.name : 'unknown error');
}

/** Prints `e` as the one error line (and its stack when verbose); returns the exit code it calls for. */
export function report(e: unknown): number {
  // a terminal may hold a progress line without a newline (npm run chat): clear it first
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  process.stderr.write(`error: ${oneLine(e)}\n`);
  if (verbose() && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return e instanceof UsageError ? 2 : 1;
}

/**
 * Runs a CLI's main and exits with report()'s code if it throws — or if
 * anything it left running throws or rejects later. On success it exits 0
 * when `exit` is set (a CLI whose GPU device or browser would keep Node up).
 */
export function runCli(main: () => Promise<void>, opts: { exit?: boolean } = {}): void {
  const die = (e: unknown) => process.exit(report(e));
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);
  main().then(() => {
    if (opts.exit) process.exit(0);
  }, die);
}

/**
 * Node's parseArgs over process.argv, with two fixes for a CLI's users: a
 * negative number after a string option is its value (`--temperature -1`
 * reaches the range check and its message, not parseArgs's "argument is
 * ambiguous"), and its errors (unknown option, missing value) are usage
 * errors, shortened to their first sentence: "unknown option '--frobnicate'".
 */
export function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const strings = new Set(Object.entries(config.options ?? {}).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  const args = [...(config.args ?? process.argv.slice(2))];
  for (let i = 0; i + 1 < args.length; i++) {
    if (strings.has(args[i]) && /^-(\d|\.\d)/.test(args[i + 1])) args.splice(i, 2, `${args[i]}=${args[i + 1]}`);
  }
  try {
    return parseArgs({ ...config, args }) as ReturnType<typeof parseArgs<T>>;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (!code?.startsWith('ERR_PARSE_ARGS')) throw e;
    const first = (e as Error).message.split(/\.\s/)[0].replace(/\.$/, '');
    throw new UsageError(first[0].toLowerCase() + first.slice(1));
  }
}

/** An integer flag in min..max, or a usage error naming the flag and the value. */
export function intFlag(name: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}..${max}`}, got '${value}'`);
  }
  return n;
}

/**
 * A number flag in [min, max] (or (min, max] with `above`), or a usage error.
 * `Number('')` is 0 and `Number('1e')` NaN, so the text is checked as a whole.
 */
export function numberFlag(name: string, value: string, min: number, max: number, opts: { above?: boolean } = {}): number {
  const n = value.trim() === '' ? NaN : Number(value);
  const low = opts.above ? n > min : n >= min;
  if (!Number.isFinite(n) || !low || n > max) {
    throw new UsageError(`--${name} must be a number in ${opts.above ? '(' : '['}${min}, ${max}], got '${value}'`);
  }
  return n;
}

/** A flag that takes one of `choices`. */
export function choiceFlag<C extends string>(name: string, value: string, choices: readonly C[]): C {
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`--${name} must be ${choices.join(' or ')}, got '${value}'`);
  return value as C;
}
