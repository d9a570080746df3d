/**
 * The CLIs fail cleanly (issue 16, part 6): a bad command line or a failed
 * run prints ONE line on stderr, `error: <message naming the problem>`, no
 * stack trace (only with --verbose), and exits 2 for a usage error, 1 for a
 * runtime one. Each case spawns the CLI as `npm run <cli>` does (tsx with the
 * WGSL loader) — through node_modules/.bin/tsx rather than npx, whose own
 * warnings about the npm config would land on the same stderr.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const TSX = join(ROOT, 'node_modules/.bin/tsx');

function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const { DEBUG: _, ...base } = process.env;
  return new Promise((done) => {
    execFile(TSX, ['--import', './scripts/wgsl-loader.mjs', script, ...args], { cwd: ROOT, env: { ...base, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      done({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr, stdout });
    });
  });
}

// a model folder whose config.json is wrong: it fails to load (after the GPU starts, in generate and serve)
const broken = mkdtempSync(join(tmpdir(), 'fastcache-cli-'));
writeFileSync(join(broken, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 'big' }));
afterAll(() => rmSync(broken, { recursive: true, force: true }));

type Case = [args: string[], code: 1 | 2, message: RegExp];

const CASES: Record<string, Case[]> = {
  'scripts/generate.ts': [
    [[], 2, /no model folder given/],
    [['public/models/stories260K', '--max-tokens', 'abc'], 2, /--max-tokens must be an integer ≥ 1, got 'abc'/],
    [['public/models/stories260K', '--temperature', '-1'], 2, /--temperature must be a number in \[0, 2\], got '-1'/],
    [['public/models/stories260K', '--top-p=0'], 2, /--top-p .*got '0'/],
    [['public/models/stories260K', '--frobnicate'], 2, /unknown option '--frobnicate'/],
    [['public/models/no-such-model', 'hi'], 1, /model folder not found: public\/models\/no-such-model/],
    [[broken, 'hi'], 1, /config\.json: field "hidden_size" must be a positive integer/],
  ],
  'scripts/serve.ts': [
    [[], 2, /--model is required/],
    [['--model', 'public/models/stories260K', '--port', 'http'], 2, /--port must be an integer in 0\.\.65535, got 'http'/],
    [['--model', 'public/models/stories260K', '--press', 'snapkv', '--ratio', '1.5'], 2, /--ratio must be a number in \[0, 1\], got '1\.5'/],
    [['--model', 'public/models/stories260K', '--frobnicate'], 2, /unknown option '--frobnicate'/],
    [['--model', broken], 1, /config\.json: field "hidden_size"/],
  ],
  'scripts/chat.ts': [
    [[], 2, /no question given/],
    [['--max-tokens', 'abc', 'hi'], 2, /--max-tokens must be an integer ≥ 1, got 'abc'/],
    [['--temperature', '-1', 'hi'], 2, /--temperature must be a number in \[0, 2\], got '-1'/],
    [['--frobnicate', 'hi'], 2, /unknown option '--frobnicate'/],
    [['--image', 'no-such.png', 'hi'], 1, /image file not found: no-such\.png/],
    [['--model', '/models/no-such-model', 'hi'], 1, /cannot fetch model file "config\.json" from \/models\/no-such-model\/config\.json: HTTP 404/], // in Chromium
  ],
  'bench/run.ts': [
    [[], 2, /no benchmark named/],
    [['decode', '--timeout', 'abc'], 2, /--timeout must be a number .*got 'abc'/],
    [['no-such-suite'], 1, /unknown benchmark 'no-such-suite'; known: decode/], // in Chromium
  ],
};

describe.concurrent.each(Object.entries(CASES))('%s', (script, cases) => {
  test.each(cases)('%j → exit %i, one line', async (args, code, message) => {
    const r = await run(script, args);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code });
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: /);
    expect(lines[0]).toMatch(message);
  });
});

test('--verbose (or DEBUG) adds the stack trace after the error line', async () => {
  const [verbose, debug] = await Promise.all([
    run('scripts/generate.ts', ['public/models/no-such-model', '--verbose']),
    run('scripts/generate.ts', ['public/models/no-such-model'], { DEBUG: '1' }),
  ]);
  for (const r of [verbose, debug]) {
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: model folder not found.*\n.*Error: model folder not found[^]*\n\s+at /);
  }
});
