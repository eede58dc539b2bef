/**
 * `kcache up`: a local cluster in the foreground. Redis (the one given, else a private
 * redis-server on a free port with its data in a temp dir), R routers and N workers as child
 * processes of this one (`kcache serve ...`); waits until each says it is ready, prints the
 * addresses and a client command, and on Ctrl-C / SIGTERM stops them all (workers drain first)
 * and exits with nothing left running. A child that dies early takes the cluster down (exit 1).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { redactRedisUrl, startRedis, type TestRedis } from '@kcache/block-index';
import { DEFAULT_ADDRESS, KcacheClient } from '@kcache/client';
import { POLICIES } from '@kcache/routing';
import {
  ATTENTION_OPTIONS,
  AUTH_OPTIONS,
  apiKeysArg,
  attentionArgs,
  CACHE_AWARE_OPTIONS,
  cacheAwareArgs,
  cacheAwareFlags,
  chatTemplateArg,
  intArg,
  kvDtypeArg,
  modelRefArg,
  OFFLOAD_OPTIONS,
  offloadArgs,
  offloadFlags,
  redisUrlArg,
  someApiKey,
  UsageError,
} from '../args.js';
import { LOAD_PROGRESS_LINE } from '../load-progress.js';
import { type CertPaths, makeClusterCerts } from './certs.js';

export const UP_USAGE = `kcache up [--workers 2] [--routers 1] [--model dummy:smol135:bf16] [--redis-url URL] [--port 50051] [--http-port 8000] [--chat-template FILE] [--served-model-name NAME] [--api-keys-file FILE] [--tls]
    [--worker-port 50061] [--metrics-port 9400] [--policy cache_aware] [--threads N] [--num-blocks N] [--quantize q8_0|q4_0|q5_0|q4_k] [--kv-cache-dtype f32|f16|bf16|q8_0] [--max-background-prefill-tokens N] [--warm-prompts FILE]
    [--offload-bytes N] [--offload-dir DIR --offload-disk-bytes N] [--peer-fetch on|off]
    [--attention full|kcache] [--kcache-topn N] [--kcache-full-layers L] [--load-cost-tokens N] [--cache-threshold F] [--json]`;

export const DEFAULT_UP_MODEL = 'dummy:smol135:bf16';

interface Child {
  name: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  proc: ChildProcess;
  ready: Promise<Record<string, unknown>>;
}

/** A worker that dies is started again, this many times at most; then the cluster stops. */
const MAX_WORKER_RESTARTS = 3;

const MAIN = process.argv[1] as string; // this CLI's entry point

function spawnChild(name: string, args: string[], env?: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, [MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ? { ...process.env, ...env } : undefined,
  });
  let stderrTail = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString()).slice(-2000);
  });
  createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    // a worker's model-loading progress, shown as the worker's
    if (LOAD_PROGRESS_LINE.test(line)) process.stderr.write(`kcache up: ${name}: ${line}\n`);
  });
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      try {
        const m = JSON.parse(line) as Record<string, unknown>;
        if (m.event === 'ready') resolve(m);
      } catch {
        // not a lifecycle line
      }
    });
    proc.once('exit', (code, signal) => {
      const last = stderrTail.trim().split('\n').at(-1) ?? '';
      reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before it was ready${last ? `: ${last}` : ''}`));
    });
  });
  ready.catch(() => {}); // observed by the caller; avoids an unhandled rejection after shutdown
  return { name, args, env, proc, ready };
}

async function startRedisServer(): Promise<TestRedis> {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error)
    throw new UsageError('redis-server is not installed: install it (apt-get install redis-server) or pass --redis-url');
  // the block index must never lose keys to eviction
  return startRedis(['--maxmemory-policy', 'noeviction']);
}

/**
 * Ready means usable: every router lists every worker (a router learns workers from their leases,
 * a moment after both have started). Gives up after 30 s with the counts it saw.
 */
async function untilRoutersSeeWorkers(routers: string[], workers: number, apiKey: string | undefined): Promise<void> {
  const clients = routers.map((a) => new KcacheClient(a, { apiKey }));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const seen = await Promise.all(
        clients.map((c) =>
          c
            .listModels()
            .then((ms) => ms.reduce((n, m) => n + m.workers, 0))
            .catch(() => 0),
        ),
      );
      if (seen.every((n) => n >= workers)) return;
      if (Date.now() > deadline) throw new Error(`routers see ${seen.join(', ')} of ${workers} workers after 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    for (const c of clients) c.close();
  }
}

function stopped(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once('exit', () => r()));
}

export async function upCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      workers: { type: 'string' },
      routers: { type: 'string' },
      model: { type: 'string' },
      'redis-url': { type: 'string' },
      port: { type: 'string' },
      'worker-port': { type: 'string' },
      'metrics-port': { type: 'string' },
      'http-port': { type: 'string' },
      'chat-template': { type: 'string' },
      'served-model-name': { type: 'string' },
      'warm-prompts': { type: 'string' },
      policy: { type: 'string' },
      threads: { type: 'string' },
      'num-blocks': { type: 'string' },
      quantize: { type: 'string' },
      'kv-cache-dtype': { type: 'string' },
      'max-background-prefill-tokens': { type: 'string' },
      json: { type: 'boolean' },
      tls: { type: 'boolean' },
      ...AUTH_OPTIONS,
      ...ATTENTION_OPTIONS,
      ...CACHE_AWARE_OPTIONS,
      ...OFFLOAD_OPTIONS,
    },
  });
  cacheAwareArgs(values); // checked here so a bad value is one line before anything starts
  // a laptop cluster may run without keys, with the router's warning; --api-keys-file turns them on
  const auth = apiKeysArg(values, false);
  const authFlags = auth ? ['--api-keys-file', auth.path] : ['--no-auth'];
  const nWorkers = intArg('workers', values.workers, 2, 1);
  const nRouters = intArg('routers', values.routers, 1, 1);
  const model = modelRefArg(values.model ?? DEFAULT_UP_MODEL, values.quantize);
  const kvDtype = kvDtypeArg(values['kv-cache-dtype']);
  const backgroundCap = values['max-background-prefill-tokens'];
  if (backgroundCap !== undefined) intArg('max-background-prefill-tokens', backgroundCap, 0, 1); // one line now, not in each worker
  // 0: every process of that kind picks a free port (the ready line says which)
  const routerPort = intArg('port', values.port, 50051, 0);
  const httpPort = intArg('http-port', values['http-port'], 8000, 0);
  chatTemplateArg(values['chat-template']);
  const workerPort = intArg('worker-port', values['worker-port'], 50061, 0);
  const metricsPort = intArg('metrics-port', values['metrics-port'], 9400, 0);
  const nth = (base: number, i: number) => String(base === 0 ? 0 : base + i);
  const policy = values.policy ?? 'cache_aware';
  if (!(POLICIES as readonly string[]).includes(policy))
    throw new UsageError(`--policy must be one of ${POLICIES.join(', ')}, got '${policy}'`);
  // the workers share this machine's cores
  const threads = intArg('threads', values.threads, Math.max(1, Math.floor(cpus().length / nWorkers)), 1);
  const attention = attentionArgs(values);
  const offload = offloadArgs(values);
  const attentionFlags = ['--attention', attention.attention];
  if (attention.kcache.topN !== undefined) attentionFlags.push('--kcache-topn', String(attention.kcache.topN));
  if (attention.kcache.topNFraction !== undefined) attentionFlags.push('--kcache-topn', String(attention.kcache.topNFraction));
  if (attention.kcache.fullLayers !== undefined) attentionFlags.push('--kcache-full-layers', String(attention.kcache.fullLayers));
  const log = (line: string) => process.stderr.write(`${line}\n`);

  // --tls: a throwaway cluster CA and one certificate per process (kcache certs), mutual TLS between routers and workers
  const certDir = values.tls ? mkdtempSync(join(tmpdir(), 'kcache-up-certs-')) : null;
  const certs = certDir
    ? makeClusterCerts(certDir, {
        workers: Array.from({ length: nWorkers }, (_, i) => `w${i + 1}`),
        routers: Array.from({ length: nRouters }, (_, i) => `r${i + 1}`),
        days: 30,
      })
    : null;
  const tlsFlags = (p: CertPaths | undefined) => (p ? ['--tls-cert', p.cert, '--tls-key', p.key, '--tls-ca', p.ca] : []);
  const redisUrl = redisUrlArg(values['redis-url'] ?? process.env.REDIS_URL);
  const redis = redisUrl ? null : await startRedisServer();
  const url = redisUrl ?? (redis?.url as string);
  const children: Child[] = [];
  let stopping = false;

  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const c of children) c.proc.kill('SIGTERM');
    const killTimer = setTimeout(() => {
      for (const c of children) c.proc.kill('SIGKILL');
    }, 15_000);
    await Promise.all(children.map((c) => stopped(c.proc)));
    clearTimeout(killTimer);
    await redis?.stop();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
    if (values.json) process.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`);
    else log('kcache up: stopped');
    process.exit(code);
  };
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  try {
    for (let i = 0; i < nWorkers; i++) {
      children.push(
        spawnChild(`worker w${i + 1}`, [
          'serve',
          'worker',
          '--model',
          model,
          '--port',
          nth(workerPort, i),
          '--redis-url',
          url,
          '--id',
          `w${i + 1}`,
          '--metrics-port',
          nth(metricsPort, nRouters + i),
          '--threads',
          String(threads),
          '--drain-grace-ms',
          '5000',
          // a dead worker's lease lapses (and its restart can claim the id) within 3 s
          '--lease-ttl-ms',
          '3000',
          ...(values['num-blocks'] ? ['--num-blocks', values['num-blocks']] : []),
          ...(kvDtype ? ['--kv-cache-dtype', kvDtype] : []),
          ...(backgroundCap ? ['--max-background-prefill-tokens', backgroundCap] : []),
          ...(values['served-model-name'] ? ['--served-model-name', values['served-model-name']] : []),
          ...(values['warm-prompts'] ? ['--warm-prompts', values['warm-prompts']] : []),
          ...tlsFlags(certs?.workers.get(`w${i + 1}`)),
          ...attentionFlags,
          ...offloadFlags(offload),
        ]),
      );
    }
    for (let i = 0; i < nRouters; i++) {
      children.push(
        spawnChild(`router r${i + 1}`, [
          'serve',
          'router',
          '--port',
          nth(routerPort, i),
          '--redis-url',
          url,
          '--id',
          `r${i + 1}`,
          '--policy',
          policy,
          '--metrics-port',
          nth(metricsPort, i),
          '--http-port',
          nth(httpPort, i),
          ...(values['chat-template'] ? ['--chat-template', values['chat-template']] : []),
          ...authFlags,
          ...tlsFlags(certs?.routers.get(`r${i + 1}`)),
          ...cacheAwareFlags(values),
        ]),
      );
    }
    const ready = await Promise.all(children.map((c) => c.ready));
    // a worker that dies is restarted (the routers move its streams meanwhile); a router is not
    const supervise = (c: Child, restarts: number) =>
      c.proc.once('exit', (code, signal) => {
        if (stopping) return;
        const why = signal ?? `code ${code}`;
        if (!(c.name.startsWith('worker') || c.name.startsWith('batch')) || restarts >= MAX_WORKER_RESTARTS) {
          log(`kcache up: ${c.name} exited (${why}); stopping the cluster`);
          void shutdown(1);
          return;
        }
        log(`kcache up: ${c.name} exited (${why}); restarting it (${restarts + 1} of ${MAX_WORKER_RESTARTS})`);
        const next = spawnChild(c.name, c.args, c.env);
        children[children.indexOf(c)] = next;
        supervise(next, restarts + 1);
        next.ready.then(
          () => log(`kcache up: ${c.name} is back`),
          () => {},
        );
      });
    const routers = ready
      .filter((r) => r.routerId)
      .map((r) => ({ id: r.routerId, address: r.address, http: r.http, metricsPort: r.metricsPort }));
    // one batch runner, sending batch requests through the first router's OpenAI API (the key,
    // where the routers want one, in its environment rather than on a command line)
    const runner = spawnChild(
      'batch runner',
      ['serve', 'batch', '--redis-url', url, '--router', String(routers[0]?.http)],
      auth ? { KCACHE_API_KEY: someApiKey(auth.path) } : undefined,
    );
    children.push(runner);
    await runner.ready;
    for (const c of children) supervise(c, 0);
    const workers = ready.filter((r) => r.workerId).map((r) => ({ id: r.workerId, address: r.address, metricsPort: r.metricsPort }));
    await untilRoutersSeeWorkers(
      routers.map((r) => String(r.address)),
      workers.length,
      auth ? someApiKey(auth.path) : undefined,
    );
    const addr = routers[0]?.address as string;
    const ask = `pnpm -s kcache ask${addr === DEFAULT_ADDRESS ? '' : ` --addr ${addr}`}${auth ? ' --api-key <key>' : ''} "Once upon a time"`;
    if (values.json) {
      const pids = [...children.map((c) => c.proc.pid), ...(redis ? [redis.pid] : [])];
      process.stdout.write(
        `${JSON.stringify({ event: 'ready', redisUrl: redactRedisUrl(url), model, routers, workers, pids, client: ask })}\n`,
      );
    } else {
      const lines = [
        `kcache up: ${nWorkers} worker(s) and ${nRouters} router(s) on ${model} (${attention.attention} attention), Redis at ${redactRedisUrl(url)}`,
        ...routers.map(
          (r) => `  router ${r.id}  grpc ${r.address}  OpenAI API ${r.http}/v1  metrics http://127.0.0.1:${r.metricsPort}/metrics`,
        ),
        ...workers.map((w) => `  worker ${w.id}  grpc ${w.address}  metrics http://127.0.0.1:${w.metricsPort}/metrics`),
        `  batch runner  submit with: pnpm -s kcache batch submit requests.jsonl --wait --redis-url ${redactRedisUrl(url)}`,
        '',
        `try:  ${ask}`,
        'stop: Ctrl-C',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
  } catch (e) {
    log(`kcache up: ${(e as Error).message.split('\n')[0]}`);
    await shutdown(1);
  }
  await new Promise(() => {}); // runs until a signal or a child's exit
}
