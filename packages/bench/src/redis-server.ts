// A private redis-server (free port, temp dir, killed at the end) for the test suites and the
// routing benchmark. Never touches the machine's shared Redis.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  url: string;
  port: number;
  /** The server's process id (undefined while killed). */
  readonly pid: number | undefined;
  client: Redis;
  /** Kills the server (SIGKILL) without cleaning up, as a crash would. */
  kill(): Promise<void>;
  /** Starts a fresh server on the same port (nothing is persisted: --save ''). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** `extraArgs` are appended to the server's command line (e.g. a maxmemory policy). */
export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'kcache-redis-'));
  const spawnServer = () =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...extraArgs], {
      stdio: 'ignore',
    });
  let proc: ChildProcess | null = spawnServer();
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  client.on('error', () => {}); // refused connections while the server starts
  const waitReady = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if (client.status === 'wait' || client.status === 'end') await client.connect();
        await client.ping();
        return;
      } catch {
        if (Date.now() > deadline)
          throw new Error(`redis-server did not start on port ${port} (is it installed? apt-get install redis-server)`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await waitReady();
  const kill = async () => {
    const p = proc;
    proc = null;
    if (!p) return;
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  };
  return {
    url,
    port,
    get pid() {
      return proc?.pid;
    },
    client,
    kill,
    async restart() {
      await kill();
      proc = spawnServer();
      await waitReady();
    },
    async stop() {
      client.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
