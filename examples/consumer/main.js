// @ts-check
// A user's page: one engine from the package — in a Worker on this page's GPU,
// or a remote OpenAI-compatible server (?remote=<base URL>&model=<id>) —
// through the same ChatEngine interface.
import { WorkerEngine } from 'fastcache-web';

/** @typedef {import('fastcache-web').ChatEngine} ChatEngine */

const params = new URLSearchParams(location.search);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @returns {Promise<ChatEngine>} */
async function openEngine() {
  const remote = params.get('remote');
  if (remote) {
    const { RemoteEngine } = await import('fastcache-web');
    return RemoteEngine.create({ baseURL: remote, model: params.get('model') ?? '' });
  }
  const engine = WorkerEngine.create({ shared: params.get('worker') !== 'dedicated' });
  await engine.load(params.get('model') ?? '/models/stories260K');
  return engine;
}

/** Streams one answer into #answer. @param {ChatEngine} engine @param {string} question */
async function ask(engine, question) {
  $('state').textContent = 'generating';
  $('answer').textContent = '';
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: question }], stream: true, max_tokens: 24, temperature: 0 });
  for await (const chunk of stream) $('answer').textContent += chunk.choices[0]?.delta.content ?? '';
  $('state').textContent = 'done';
}

try {
  const engine = await openEngine();
  const info = await engine.info();
  $('backend').textContent = params.get('remote') ? 'remote' : 'worker';
  $('model').textContent = info.modelId;
  $('state').textContent = 'ready';
  Object.assign(window, { consumerEngine: engine });
  $('ask').addEventListener('submit', (e) => {
    e.preventDefault();
    ask(engine, /** @type {HTMLInputElement} */ ($('question')).value).catch((err) => {
      $('error').textContent = String(err?.message ?? err);
      $('state').textContent = 'error';
    });
  });
} catch (err) {
  $('error').textContent = String(/** @type {Error} */ (err)?.message ?? err);
  $('state').textContent = 'error';
}
