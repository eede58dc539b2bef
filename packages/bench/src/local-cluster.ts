// A `kcache up` cluster as child processes (its own Redis, routers, workers), for benchmarks that
// need the real process topology: client, router and worker each with their own event loop.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface LocalCluster {
  /** The cluster's Redis (its password, if any, in the clear: this is the caller's own cluster). */
  redisUrl: string;
  routers: { id: string; address: string; http: string; metricsPort: number }[];
  workers: { id: string; address: string; metricsPort: number }[];
  stop(): Promise<void>;
}

/** Starts `node <cli> up --json ...args` on free ports and resolves once every process is ready. */
export async function startLocalCluster(cli: string, args: string[]): Promise<LocalCluster> {
  const up: ChildProcess = spawn(
    process.execPath,
    [cli, 'up', '--port', '0', '--worker-port', '0', '--metrics-port', '0', '--http-port', '0', '--json', ...args],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise((r) => up.once('exit', r));
  const ready = await new Promise<Omit<LocalCluster, 'stop'>>((resolve, reject) => {
    createInterface({ input: up.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.event === 'ready') resolve(m);
    });
    up.once('exit', (code) => reject(new Error(`kcache up exited with ${code}`)));
  });
  return {
    ...ready,
    async stop() {
      up.kill('SIGTERM');
      await exited;
    },
  };
}
