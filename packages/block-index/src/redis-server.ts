// A private redis-server (free port, temp dir, killed at the end) for the test suites and the
// routing benchmark. Never touches the machine's shared Redis.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';

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

/** Connects (again) and pings until the server answers; after 10 s, throws `failure`. */
async function untilPong(client: Redis, failure: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if (client.status === 'wait' || client.status === 'end') await client.connect();
      await client.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(failure);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
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

/**
 * `extraArgs` are appended to the server's command line (e.g. a maxmemory policy); with
 * `password`, the server requires it (`requirepass`) and `url` carries it.
 */
export async function startRedis(extraArgs: string[] = [], password?: string): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'kcache-redis-'));
  const auth = password === undefined ? [] : ['--requirepass', password];
  const spawnServer = () =>
    spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...auth, ...extraArgs],
      { stdio: 'ignore' },
    );
  let proc: ChildProcess | null = spawnServer();
  const url = `redis://${password === undefined ? '' : `:${encodeURIComponent(password)}@`}127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  client.on('error', () => {}); // refused connections while the server starts
  const waitReady = () => untilPong(client, `redis-server did not start on port ${port} (is it installed? apt-get install redis-server)`);
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

export interface TestRedisCluster {
  /** redis-cluster://127.0.0.1:p1,... (connectRedis's form). */
  url: string;
  ports: number[];
  client: Cluster;
  stop(): Promise<void>;
}

/**
 * A private Redis Cluster of `masters` masters (no replicas) on loopback: `redis-server
 * --cluster-enabled yes` per node, joined with `redis-cli --cluster create`, each node with its
 * own temp dir; stop() kills them and removes the dirs.
 */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const ports: number[] = [];
  while (ports.length < masters) {
    const p = await freePort();
    // the cluster bus listens on port + 10000: both must be free
    if (p + 10000 < 65536 && !ports.includes(p)) ports.push(p);
  }
  const dir = mkdtempSync(join(tmpdir(), 'kcache-redis-cluster-'));
  const procs = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    ),
  );
  const stopAll = async () => {
    await Promise.all(
      procs.map((p) => {
        if (p.exitCode !== null || p.signalCode !== null) return null;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        return exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
      probe.on('error', () => {}); // refused connections while the node starts
      await untilPong(probe, `redis-server (cluster node) did not start on port ${port}`).finally(() => probe.disconnect());
    }
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      {
        encoding: 'utf8',
      },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stderr || create.stdout}`);
    const client = new Cluster(
      ports.map((port) => ({ host: '127.0.0.1', port })),
      { redisOptions: { maxRetriesPerRequest: 1 } },
    );
    client.on('error', () => {});
    const deadline = Date.now() + 15_000;
    for (;;) {
      // the slots are assigned at once, but every node must agree before the cluster says ok
      const state = await client.cluster('INFO').catch(() => '');
      if (/cluster_state:ok/.test(String(state))) break;
      if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
      ports,
      client,
      async stop() {
        client.disconnect();
        await stopAll();
      },
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
