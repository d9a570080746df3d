/**
 * The page: the chat (chat-app.ts) on the whole body, on an engine in a
 * dedicated Worker (this entry point is where it is made). `?model=` picks
 * the model to load first (tests use it). `window.fastcache.stats()` hands
 * the engine's counters to tests and the console.
 */
import { ChatApp } from './chat-app.ts';
import { DEFAULT_MODEL } from './model-picker.ts';
import { workerEngines } from '../worker/client.ts';
import type { EngineStats } from '../api/index.ts';

declare global {
  interface Window {
    fastcache?: { app: ChatApp; stats(): Promise<EngineStats> };
  }
}

const model = new URLSearchParams(location.search).get('model') || DEFAULT_MODEL;
const app = new ChatApp(document.getElementById('app')!, { engines: workerEngines(), model, host: document.body, pasteTarget: document, full: true });
window.fastcache = { app, stats: () => app.session.stats() };
