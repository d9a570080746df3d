/**
 * Shipped model files are checked, not retrained: every folder public/models/NAME/ that has a
 * manifest.sha256 ("<sha256 hex>  <relative path>" per line, as `sha256sum` writes it) must
 * hold exactly the listed files (dotfiles and subfolders included; manifest.sha256 itself aside),
 * each with the listed digest. A changed byte, a missing file or a stray file fails.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const MODELS = resolve('public/models');
const MANIFEST = 'manifest.sha256';

interface Entry { sha256: string; path: string }

/** Parses manifest text; throws on a malformed line, an unsafe path or a duplicate. */
function parseManifest(text: string): Entry[] {
  const entries: Entry[] = [];
  const seen = new Set<string>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m) throw new Error(`${MANIFEST} line ${i + 1} is not "<sha256>  <path>": ${JSON.stringify(line)}`);
    const path = m[2]!;
    if (path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '.' || s === '')) {
      throw new Error(`${MANIFEST} line ${i + 1}: unsafe path ${JSON.stringify(path)}`);
    }
    if (seen.has(path)) throw new Error(`${MANIFEST} line ${i + 1}: ${path} listed twice`);
    seen.add(path);
    entries.push({ sha256: m[1]!, path });
  }
  return entries;
}

/** Every regular file under dir, as posix paths relative to dir. */
function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix === '' ? name : posix.join(prefix, name);
    const st = statSync(join(dir, rel));
    if (st.isDirectory()) out.push(...listFiles(dir, rel));
    else out.push(rel);
  }
  return out;
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

const folders = existsSync(MODELS)
  ? readdirSync(MODELS).filter((n) => existsSync(join(MODELS, n, MANIFEST))).sort()
  : [];

describe('manifest format', () => {
  it('parses sha256sum lines and rejects malformed, unsafe and duplicate entries', () => {
    const h = 'ab'.repeat(32);
    expect(parseManifest(`${h}  a.json\n${h}  onnx/b.onnx\n`)).toEqual([
      { sha256: h, path: 'a.json' },
      { sha256: h, path: 'onnx/b.onnx' },
    ]);
    expect(() => parseManifest(`${h} a.json\n`)).toThrow(/not "<sha256>  <path>"/);
    expect(() => parseManifest(`${h.slice(2)}  a.json\n`)).toThrow(/not "<sha256>  <path>"/);
    expect(() => parseManifest(`${h}  ../x\n`)).toThrow(/unsafe path/);
    expect(() => parseManifest(`${h}  a\n${h}  a\n`)).toThrow(/listed twice/);
  });
});

describe.each(folders)('public/models/%s', (name) => {
  const dir = join(MODELS, name);
  const entries = parseManifest(readFileSync(join(dir, MANIFEST), 'utf8'));

  it('lists at least one file', () => {
    expect(entries.length).toBeGreaterThan(0);
  });

  it('every listed file exists with its sha256', () => {
    const bad: string[] = [];
    for (const e of entries) {
      const file = join(dir, e.path);
      if (!existsSync(file)) bad.push(`${e.path}: missing`);
      else if (sha256(file) !== e.sha256) bad.push(`${e.path}: sha256 differs from the manifest`);
    }
    expect(bad).toEqual([]);
  });

  it('every file in the folder is listed', () => {
    const listed = new Set(entries.map((e) => e.path));
    const unlisted = listFiles(dir).filter((p) => p !== MANIFEST && !listed.has(p));
    expect(unlisted).toEqual([]);
  });
});
