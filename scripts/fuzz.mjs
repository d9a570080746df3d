#!/usr/bin/env node
// The fuzzers alone, with a number of cases per property: every *.fuzz.node.test.ts (model files,
// images, model references, prompts and requests, the HTTP server), or those whose path contains
// one of the given words. docs/fuzzing.md lists them.
//
//   npm run fuzz                           1,000 cases per property (what CI runs), the fixed seed
//   npm run fuzz -- --runs 100000          a long run (no per-test timeout)
//   npm run fuzz -- --runs 5000 --seed random safetensors image
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = 'usage: npm run fuzz -- [--runs N] [--seed INT|random] [words in the fuzzers\' paths...]';

function fail(message) {
  console.error(`error: ${message}; ${USAGE}`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({ options: { runs: { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
} catch (e) {
  fail(e.message.split('\n')[0]);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const env = { ...process.env };
if (values.runs !== undefined) {
  if (!/^[1-9]\d*$/.test(values.runs)) fail(`--runs ${values.runs}: expected a positive integer (cases per property)`);
  env.FUZZ_RUNS = values.runs;
}
if (values.seed !== undefined) env.FUZZ_SEED = values.seed; // test/fuzz.ts checks it and says what it takes

const all = readdirSync('src', { recursive: true }).map(String).filter((f) => f.endsWith('.fuzz.node.test.ts')).map((f) => join('src', f)).sort();
const files = positionals.length ? all.filter((f) => positionals.some((w) => f.includes(w))) : all;
if (files.length === 0) fail(`no fuzzer's path contains ${positionals.map((w) => JSON.stringify(w)).join(' or ')}; the fuzzers: ${all.join(', ')}`);
const long = Number(env.FUZZ_RUNS ?? 1000) > 1000;
const r = spawnSync('npx', ['vitest', 'run', '--project', 'node', ...(long ? ['--testTimeout=0', '--hookTimeout=0'] : []), ...files], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
