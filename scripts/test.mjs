#!/usr/bin/env node
// The test command: every vitest project (Node + headless Chromium) and the
// Playwright e2e suite, then one closing line 'N passed, N failed' that CI
// reads (neither runner prints one in that form).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';

mkdirSync('test-results', { recursive: true });
let passed = 0, failed = 0, skipped = 0;
let ok = true;

const vitest = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', '--outputFile.json=test-results/vitest.json', ...process.argv.slice(2)], { stdio: 'inherit' });
if (existsSync('test-results/vitest.json')) {
  const r = JSON.parse(readFileSync('test-results/vitest.json', 'utf8'));
  passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  if (r.numFailedTestSuites > 0 && r.numFailedTests === 0) failed += r.numFailedTestSuites; // a file that failed to load
}
if (vitest.status !== 0) ok = false;

const hasE2e = existsSync('e2e') && readdirSync('e2e').some((f) => f.endsWith('.spec.ts'));
if (hasE2e && process.argv.length <= 2) {
  const pw = spawnSync('npx', ['playwright', 'test', '--reporter=list,json'], { stdio: ['inherit', 'inherit', 'inherit'], env: { ...process.env, PLAYWRIGHT_JSON_OUTPUT_NAME: 'test-results/e2e.json' } });
  if (existsSync('test-results/e2e.json')) {
    const s = JSON.parse(readFileSync('test-results/e2e.json', 'utf8')).stats;
    passed += s.expected + (s.flaky ?? 0); failed += s.unexpected; skipped += s.skipped;
  }
  if (pw.status !== 0) ok = false;
}
if (!ok && failed === 0) failed = 1; // a runner failed without counting a test
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(ok && failed === 0 ? 0 : 1);
