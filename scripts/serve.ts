/**
 * An OpenAI-compatible HTTP server over the in-process engine, on Node's WebGPU.
 *
 *   npm run serve -- --model /models/tiny-vlm-shapes
 *   npm run serve -- --model public/models/tiny-llama-gqa --port 8123 --kv-dtype f16 --kv-cache-mb 128
 *   npm run serve -- --model /models/tiny-vlm-shapes --press snapkv --ratio 0.5 --cors-origin http://127.0.0.1:5173
 *
 * Then any OpenAI client: `new OpenAI({ baseURL: 'http://127.0.0.1:8000/v1', apiKey: 'none' })`.
 * Ctrl-C (SIGINT) or SIGTERM aborts what is running and frees the GPU. Errors
 * are one line on stderr (scripts/cli-errors.ts): exit 2 for a bad command
 * line, 1 for a model that does not load or a port that cannot be bound.
 */
import { statSync } from 'node:fs';
import type { Engine, EngineOptions } from '../src/engine/engine.ts';
import type { ModelSource } from '../src/model/source.ts';
import { DEFAULT_MAX_BODY_BYTES, startOpenAIServer } from '../src/server/openai-server.ts';
import { choiceFlag, intFlag, numberFlag, parseFlags, runCli, UsageError } from './cli-errors.ts';

const USAGE = `usage: npm run serve -- --model <folder | /models/NAME | URL | HUB_ID> [--host 127.0.0.1] [--port 8000]
  [--cors-origin ORIGIN] [--max-body-bytes N (default ${DEFAULT_MAX_BODY_BYTES})] [--served-model-name NAME]
  [--kv-dtype f32|f16] [--kv-cache-mb MB] [--weight-dtype auto|f32|f16] [--press NAME --ratio R (default compression)] [--quiet] [--verbose]`;

function parse() {
  const { values } = parseFlags({
    options: {
      model: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8000' },
      'cors-origin': { type: 'string' },
      'max-body-bytes': { type: 'string', default: String(DEFAULT_MAX_BODY_BYTES) },
      'served-model-name': { type: 'string' },
      'kv-dtype': { type: 'string', default: 'f32' },
      'kv-cache-mb': { type: 'string' },
      'weight-dtype': { type: 'string', default: 'auto' },
      press: { type: 'string' },
      ratio: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  if (!values.model) throw new UsageError('--model is required; --help for usage');
  return {
    ...values,
    model: values.model,
    port: intFlag('port', values.port, 0, 65535),
    maxBodyBytes: intFlag('max-body-bytes', values['max-body-bytes'], 1),
    options: engineOptions(values),
  };
}

function engineOptions(values: Record<string, string | boolean | undefined>): EngineOptions {
  const kvDtype = choiceFlag('kv-dtype', String(values['kv-dtype']), ['f32', 'f16'] as const);
  const weightDtype = choiceFlag('weight-dtype', String(values['weight-dtype']), ['auto', 'f32', 'f16'] as const);
  const opts: EngineOptions = { kvDtype, weightDtype };
  if (typeof values['kv-cache-mb'] === 'string') opts.kvCacheBytes = intFlag('kv-cache-mb', values['kv-cache-mb'], 1) * 2 ** 20;
  if (values.ratio !== undefined && values.press === undefined) throw new UsageError('--ratio needs --press');
  if (typeof values.press === 'string') {
    const ratio = typeof values.ratio === 'string' ? numberFlag('ratio', values.ratio, 0, 1) : 0.5;
    if (ratio >= 1) throw new UsageError(`--ratio must be below 1 (the fraction of the KV cache a press removes), got '${values.ratio}'`);
    opts.compression = { press: values.press, ratio }; // the engine checks the press's name at load
  }
  return opts;
}

/** A folder on disk as given; otherwise a path under public/, a URL or a Hub id (resolveSource). */
async function modelSource(ref: string): Promise<ModelSource> {
  const { localFolderSource, resolveSource } = await import('../src/model/source.ts');
  if (!/^https?:\/\//i.test(ref) && statSync(ref, { throwIfNoEntry: false })?.isDirectory()) return localFolderSource(ref);
  return resolveSource(ref);
}

async function main(): Promise<void> {
  const a = parse();
  if (!a) {
    console.log(USAGE);
    return;
  }
  const started = performance.now();
  // on a terminal only: a script reading stderr gets the one error line alone when loading fails
  if (process.stderr.isTTY) console.error(`loading ${a.model} ...`);
  const { acquireNodeGpu } = await import('../src/gpu/node-gpu.ts');
  const { Engine } = await import('../src/engine/engine.ts');
  const source = await modelSource(a.model);
  const gpu = await acquireNodeGpu();
  const engine: Engine = await Engine.load(gpu, source, a.options);
  const info = await engine.info();
  console.error(
    `loaded ${info.modelId} (${info.architecture}, ${(info.parameters / 1e6).toFixed(2)}M parameters, ${info.weightDtype} weights, ` +
      `${info.kvPages} KV pages of ${info.pageSize} ${info.kvDtype}${info.vision ? `, vision on ${info.visionBackend}` : ''}) ` +
      `on ${info.adapter} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  const server = await startOpenAIServer(engine, {
    host: a.host,
    port: a.port,
    maxBodyBytes: a.maxBodyBytes,
    corsOrigin: a['cors-origin'] ?? null,
    ...(a['served-model-name'] ? { servedModelName: a['served-model-name'] } : {}),
    ...(a.quiet ? {} : { log: (line: string) => console.error(line) }),
  }).catch(async (e: Error) => {
    await engine.destroy();
    throw new Error(`cannot listen on ${a.host}:${a.port}: ${e.message}`);
  });
  console.log(`serving ${a['served-model-name'] ?? info.modelId} at ${server.url}/v1 (OpenAI-compatible; GET ${server.url}/health)`);

  let stopping = false;
  async function shutdown(signal: string): Promise<void> {
    if (stopping) process.exit(1); // a second Ctrl-C: do not wait
    stopping = true;
    console.error(`${signal}: shutting down`);
    await server.close();
    await engine.destroy();
    process.exit(0);
  }
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

runCli(main);
