/**
 * A Worker's lifetime, made visible to its pages. A Worker that crashes (out
 * of memory, a renderer kill) or closes itself sends nothing, and a comlink
 * call to it waits forever. So each engine Worker takes a Web Lock of a fresh
 * name at start and holds it while it lives; a page asks for the same lock,
 * and the browser grants it once the Worker is gone (its locks go with it).
 * The mirror image of the page's own lifetime lock (client.ts, hub.ts watchLock).
 */
export const WORKER_LOCK_PREFIX = 'fastcache-web/worker/';

/** Takes and holds this Worker's lock; resolves with its name once held (null without Web Locks). */
export function holdWorkerLock(): Promise<string | null> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return Promise.resolve(null);
  const name = WORKER_LOCK_PREFIX + crypto.randomUUID();
  return new Promise((held) => {
    locks
      .request(name, () => {
        held(name);
        return new Promise<never>(() => {}); // released only when this Worker ends
      })
      .catch(() => held(null));
  });
}

/**
 * Calls `gone` when the Worker holding lock `name` has ended; `stop` ends the
 * watch without calling it (the page itself ended the Worker).
 */
export function watchWorkerLock(name: string, gone: () => void): { stop(): void } {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  const stop = new AbortController();
  locks
    ?.request(name, { signal: stop.signal }, () => {
      if (!stop.signal.aborted) gone();
    })
    .catch(() => {}); // AbortError: stopped
  return { stop: () => stop.abort() };
}
