/**
 * `npm run serve` as a user starts it, for e2e tests: in its own process
 * group (npm → sh → tsx → node), so stopping it stops the whole tree and the
 * server frees its GPU.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export interface ServeProcess {
  /** http://127.0.0.1:<port>/v1 */
  base: string;
  stop(): Promise<void>;
}

/** Starts the server on a free port with CORS open to `corsOrigin`; resolves once it serves. */
export async function startServe(model: string, corsOrigin: string): Promise<ServeProcess> {
  const port = await freePort();
  const server = spawn('npm', ['run', 'serve', '--', '--model', model, '--port', String(port), '--cors-origin', corsOrigin, '--quiet'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const base = await served(server);
  return { base, stop: () => (server.pid ? stopGroup(server.pid) : Promise.resolve()) };
}

function served(server: ChildProcess): Promise<string> {
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm run serve did not start in 150 s:\n${log}`)), 150_000);
    const onData = (d: Buffer) => {
      log += d.toString();
      const m = /serving \S+ at (http:\/\/\S+\/v1)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    server.stdout!.on('data', onData);
    server.stderr!.on('data', onData);
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`npm run serve exited (${code}):\n${log}`));
    });
  });
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** SIGTERM to the server's process group (npm, sh, tsx, node: the server shuts down and frees the GPU); SIGKILL if it lingers past 15 s. */
async function stopGroup(pgid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(-pgid, 'SIGTERM');
  for (const end = Date.now() + 15_000; alive() && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
  if (alive()) process.kill(-pgid, 'SIGKILL');
}
