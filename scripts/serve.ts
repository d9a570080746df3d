/**
 * An OpenAI-compatible HTTP server over the in-process engine, on Node's WebGPU.
 *
 *   npm run serve -- --model /models/tiny-vlm-shapes
 *   npm run serve -- --model public/models/tiny-llama-gqa --port 8123 --kv-dtype f16 --kv-cache-mb 128
 *   npm run serve -- --model /models/tiny-vlm-shapes --press snapkv --ratio 0.5 --cors-origin http://127.0.0.1:5173
 *
 * Then any OpenAI client: `new OpenAI({ baseURL: 'http://127.0.0.1:8000/v1', apiKey: 'none' })`.
 * Ctrl-C (SIGINT) or SIGTERM aborts what is running and frees the GPU.
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { acquireNodeGpu } from '../src/gpu/node-gpu.ts';
import { Engine, type EngineOptions } from '../src/engine/engine.ts';
import { localFolderSource, resolveSource, type ModelSource } from '../src/model/source.ts';
import { DEFAULT_MAX_BODY_BYTES, startOpenAIServer } from '../src/server/openai-server.ts';

const USAGE = `usage: npm run serve -- --model <folder | /models/NAME | URL | HUB_ID> [--host 127.0.0.1] [--port 8000]
  [--cors-origin ORIGIN] [--max-body-bytes N (default ${DEFAULT_MAX_BODY_BYTES})] [--served-model-name NAME]
  [--kv-dtype f32|f16] [--kv-cache-mb MB] [--weight-dtype auto|f32|f16] [--press NAME --ratio R (default compression)] [--quiet]`;

const { values } = parseArgs({
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
    help: { type: 'boolean', short: 'h', default: false },
  },
});

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

/** A non-negative integer option, or a usage error naming it. */
function integer(name: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer in ${min}..${max}, got '${value}'`);
  return n;
}

/** A folder on disk as given; otherwise a path under public/, a URL or a Hub id (resolveSource). */
function modelSource(ref: string): ModelSource {
  if (!/^https?:\/\//i.test(ref) && statSync(ref, { throwIfNoEntry: false })?.isDirectory()) return localFolderSource(ref);
  return resolveSource(ref);
}

function engineOptions(): EngineOptions {
  const kvDtype = values['kv-dtype'];
  if (kvDtype !== 'f32' && kvDtype !== 'f16') fail(`--kv-dtype must be f32 or f16, got '${kvDtype}'`);
  const weightDtype = values['weight-dtype'];
  if (weightDtype !== 'auto' && weightDtype !== 'f32' && weightDtype !== 'f16') fail(`--weight-dtype must be auto, f32 or f16, got '${weightDtype}'`);
  const opts: EngineOptions = { kvDtype, weightDtype };
  if (values['kv-cache-mb'] !== undefined) opts.kvCacheBytes = integer('kv-cache-mb', values['kv-cache-mb'], 1) * 2 ** 20;
  if (values.ratio !== undefined && values.press === undefined) fail('--ratio needs --press');
  if (values.press !== undefined) opts.compression = { press: values.press, ratio: Number(values.ratio ?? 0.5) }; // the engine checks both at load
  return opts;
}

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!values.model) fail('--model is required');
const port = integer('port', values.port, 0, 65535);
const maxBodyBytes = integer('max-body-bytes', values['max-body-bytes'], 1);
const options = engineOptions();

const started = performance.now();
console.error(`loading ${values.model} ...`);
const gpu = await acquireNodeGpu();
const engine = await Engine.load(gpu, modelSource(values.model), options);
const info = await engine.info();
console.error(
  `loaded ${info.modelId} (${info.architecture}, ${(info.parameters / 1e6).toFixed(2)}M parameters, ${info.weightDtype} weights, ` +
    `${info.kvPages} KV pages of ${info.pageSize} ${info.kvDtype}${info.vision ? `, vision on ${info.visionBackend}` : ''}) ` +
    `on ${info.adapter} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
);

const server = await startOpenAIServer(engine, {
  host: values.host,
  port,
  maxBodyBytes,
  corsOrigin: values['cors-origin'] ?? null,
  ...(values['served-model-name'] ? { servedModelName: values['served-model-name'] } : {}),
  ...(values.quiet ? {} : { log: (line: string) => console.error(line) }),
}).catch(async (e: Error) => {
  await engine.destroy();
  console.error(`cannot listen on ${values.host}:${port}: ${e.message}`);
  process.exit(1);
});
console.log(`serving ${values['served-model-name'] ?? info.modelId} at ${server.url}/v1 (OpenAI-compatible; GET ${server.url}/health)`);

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
