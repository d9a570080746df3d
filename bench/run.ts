/**
 * One runner for every benchmark: serves the project with Vite, drives
 * headless Chromium through Playwright, and writes bench/results/<name>.json,
 * .md and .png. The same command runs on a GPU machine by giving the browser
 * and its flags:
 *
 *   npm run bench -- decode --preset smollm2-135m --tokens 16
 *   npm run bench -- decode --browser /usr/bin/chromium --flag=--enable-features=Vulkan --flag=--use-angle=vulkan
 *
 * Options the runner itself takes: --browser PATH, --flag ARG (repeatable),
 * --unsafe (adds Dawn's disable_robustness, which users' browsers lack),
 * --out DIR, --timeout SECONDS, --require-hardware (fail, before the benchmark
 * runs, when the adapter is a software one: SwiftShader, llvmpipe, lavapipe —
 * for GPU runners), --verbose (a failure's stack trace). Everything
 * else goes to the benchmark. Errors are one line on stderr
 * (scripts/cli-errors.ts): exit 2 for a bad command line, 1 otherwise (an
 * unknown benchmark, one that fails, a browser that does not start).
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { openHeadless } from '../scripts/headless.ts';
import { numberFlag, runCli, UsageError } from '../scripts/cli-errors.ts';
import { markdownTable, renderPanels } from './plot.ts';
import type { BenchRestart, BenchResult } from './types.ts';

function parse(argv: string[]) {
  const [name, ...rest] = argv;
  const opts: Record<string, string> = {};
  const flags: string[] = [];
  let browser = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  let out = 'bench/results';
  let timeout = 1800;
  let requireHardware = false;
  for (let i = 0; i < rest.length; i++) {
    const [k, inline] = rest[i].replace(/^--/, '').split(/=(.*)/s);
    const value = () => inline ?? rest[++i];
    if (k === 'browser') browser = value();
    else if (k === 'flag') flags.push(value());
    else if (k === 'unsafe') flags.push('--enable-dawn-features=disable_robustness,allow_unsafe_apis');
    else if (k === 'out') out = value();
    else if (k === 'timeout') timeout = numberFlag('timeout', value() ?? '', 0, 1e7, { above: true });
    else if (k === 'require-hardware') requireHardware = true;
    else if (k === 'verbose') continue; // read by cli-errors.ts
    else opts[k] = inline ?? (rest[i + 1] && !rest[i + 1].startsWith('--') ? rest[++i] : 'true');
  }
  if (!name || name.startsWith('--')) throw new UsageError('no benchmark named: npm run bench -- <name> [--browser PATH] [--flag ARG]... [benchmark options]');
  return { name, opts, flags, browser, out, timeout, requireHardware };
}

/** The adapter's name when it is a software rasterizer, else null. */
function softwareAdapter(info: { vendor: string; architecture: string; description: string; device: string }): string | null {
  const all = `${info.vendor} ${info.architecture} ${info.description} ${info.device}`;
  return /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render/i.test(all) ? all.trim() : null;
}

/** Browser flags a suite needs: the soak samples the JS heap after a forced GC, exactly. */
const SUITE_FLAGS: Record<string, string[]> = { soak: ['--js-flags=--expose-gc', '--enable-precise-memory-info'] };

/** Work a suite needs done in Node before the browser starts: the peers benchmark's model files (ONNX, GGUF). */
const SUITE_PREPARE: Record<string, (opts: Record<string, string>) => Promise<void>> = {
  peers: async (opts) => {
    const { PEER_MODELS, preparePeerModels } = await import('./peers/prepare.ts');
    await preparePeerModels(opts.models?.split(',') ?? PEER_MODELS, console.log);
  },
};

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2));
  await SUITE_PREPARE[a.name]?.(a.opts);
  const headless = await openHeadless('bench/page.html', { browser: a.browser, flags: [...(SUITE_FLAGS[a.name] ?? []), ...a.flags] });
  const { args, close, version } = headless;
  let page = headless.page;
  try {
    const runOnce = async (carry: unknown) => {
      page.on('console', (m) => m.text().startsWith('[bench]') && console.log(m.text().slice(8)));
      await page.waitForFunction(() => typeof window.runBench === 'function');
      page.setDefaultTimeout(a.timeout * 1000);
      if (a.requireHardware) {
        const info = await page.evaluate(async () => {
          const ad = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' });
          return ad ? { vendor: ad.info.vendor, architecture: ad.info.architecture, description: ad.info.description, device: ad.info.device } : null;
        });
        if (!info) throw new Error('--require-hardware: this browser has no WebGPU adapter; pass the flags that enable it (e.g. --flag=--enable-unsafe-webgpu --flag=--enable-features=Vulkan)');
        const soft = softwareAdapter(info);
        if (soft) throw new Error(`--require-hardware: the adapter is a software one (${soft}); pass the browser and flags that select the GPU (e.g. --flag=--use-angle=vulkan --flag=--enable-features=Vulkan)`);
      }
      return (await page.evaluate(([n, o, c]) => window.runBench(n, o, c), [a.name, a.opts, carry] as const)) as (BenchResult | BenchRestart) & { adapter: unknown };
    };
    let step = await runOnce(undefined);
    while ('restart' in step) {
      console.log('(browser restart on the same profile)');
      page = await headless.restart();
      step = await runOnce(step.carry);
    }
    const result = step;
    const meta = {
      date: new Date().toISOString(),
      commit: git('rev-parse --short HEAD'),
      dirty: git('status --porcelain') !== '',
      browser: { path: a.browser, version, flags: args },
      adapter: result.adapter,
      options: a.opts,
    };
    mkdirSync(a.out, { recursive: true });
    const base = resolve(a.out, a.name);
    writeFileSync(`${base}.json`, JSON.stringify({ meta, ...result }, null, 2));
    const md = [`# ${a.name}`, '', `${meta.date} · commit ${meta.commit}${meta.dirty ? ' (dirty)' : ''} · Chromium ${meta.browser.version} · ${JSON.stringify(result.adapter)}`, `flags: \`${args.join(' ')}\` · options: \`${JSON.stringify(a.opts)}\``, '', markdownTable(result.table), '', ...(result.notes ?? []).map((n) => `- ${n}`), '', `![${a.name}](${a.name}.png)`, ''];
    writeFileSync(`${base}.md`, md.join('\n'));
    const plots = [...(result.plot ? [result.plot] : []), ...(result.plots ?? [])];
    if (plots.length > 0) {
      await page.setContent(renderPanels(plots));
      await page.locator('svg').first().screenshot({ path: `${base}.png` });
    }
    console.log(`\n${markdownTable(result.table)}\n`);
    (result.notes ?? []).forEach((n) => console.log(`- ${n}`));
    console.log(`\nwrote ${base}.{json,md,png}`);
  } finally {
    await close();
  }
}

function git(cmd: string): string {
  try {
    return execSync(`git ${cmd}`, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

runCli(main);
