import { parseArgs } from 'node:util';
import { redactRedisUrl } from '@kcache/block-index';
import { evictionWarning, grpcSnapshots, JobsMetrics, parseWarmPrompts, startBatchRunner, startUpkeep, WarmInputError } from '@kcache/jobs';
import { serveMetrics } from '@kcache/metrics';
import { startRouter } from '@kcache/router';
import { POLICIES, type PolicyName } from '@kcache/routing';
import { startWorker } from '@kcache/worker';
import { pino } from 'pino';
import {
  ATTENTION_OPTIONS,
  AUTH_OPTIONS,
  apiKeysArg,
  attentionArgs,
  CACHE_AWARE_OPTIONS,
  cacheAwareArgs,
  chatTemplateArg,
  connectJobsRedis,
  intArg,
  kvDtypeArg,
  modelRefArg,
  NO_AUTH_WARNING,
  numArg,
  OFFLOAD_OPTIONS,
  offloadArgs,
  readUserFile,
  redisUrlArg,
  someApiKey,
  TLS_OPTIONS,
  tlsArg,
  UsageError,
} from '../args.js';
import { stderrLoadProgress } from '../load-progress.js';

export const SERVE_USAGE = `kcache serve worker --model M --port P [--redis-url URL] [--id NAME] [--host H] [--advertise-host H] [--metrics-port N] [--metrics-host H]
    [--num-blocks N] [--block-size N] [--threads N] [--max-num-seqs N] [--max-batched-tokens N] [--max-background-prefill-tokens N] [--max-waiting N]
    [--drain-grace-ms N] [--lease-ttl-ms N] [--redis-wait-ms 30000] [--tls-cert F --tls-key F --tls-ca F] [--served-model-name NAME] [--kv-cache-bytes N] [--quantize q8_0|q4_0|q5_0|q4_k] [--kv-cache-dtype f32|f16|bf16|q8_0] [--warm-prompts FILE] [--attention full|kcache] [--kcache-topn N] [--kcache-full-layers L]
    [--offload-bytes N] [--offload-dir DIR --offload-disk-bytes N] [--peer-fetch on|off]
  kcache serve router --port P --redis-url URL (--api-keys-file FILE | --no-auth) [--tenant-requests-per-s N] [--tenant-tokens-per-s N]
    [--policy ${POLICIES.join('|')}] [--id NAME] [--host H] [--metrics-port N] [--metrics-host H]
    [--load-cost-tokens 64] [--balance-abs-threshold 8] [--balance-rel-threshold 1.5] [--host-hit-credit 0.8] [--offload-ram-credit C] [--offload-disk-credit C] [--cache-threshold 0.3]
    [--max-migrations 3] [--first-token-timeout-ms 120000] [--inter-token-timeout-ms 5000]
    [--max-prompt-bytes N] [--max-inflight N] [--worker-keepalive-ms 1000] [--tls-cert F --tls-key F --tls-ca F] [--log-level info] [--http-port N] [--chat-template FILE]
  kcache serve batch --redis-url URL --router http://HOST:PORT [--api-key KEY | --api-key-file FILE] [--id NAME] [--concurrency 4] [--rate N] [--lock-ms 30000]
    [--upkeep-every-ms 30000] [--metrics-port N] [--metrics-host H] [--tls-cert F --tls-key F --tls-ca F]`;

/** --warm-prompts FILE: the prompts of a `kcache warm` file, as text (the worker renders no chat template). */
function warmPromptsArg(file: string): string[] {
  const read = readUserFile(file);
  if ('problem' in read) throw new UsageError(`--warm-prompts: ${file}: ${read.problem}`);
  const { text } = read;
  try {
    return parseWarmPrompts(text).map((p, i) => {
      if ('text' in p) return p.text;
      throw new WarmInputError(`prompt ${i + 1} is a chat; warm chats with kcache warm (the router renders chat templates)`);
    });
  } catch (e) {
    throw new UsageError(`--warm-prompts: ${file}: ${(e as Error).message}`);
  }
}

function apiKeyFromFile(file: string): string {
  try {
    return someApiKey(file);
  } catch (e) {
    throw new UsageError(`--api-key-file: ${(e as Error).message}`);
  }
}

async function serveBatch(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'redis-url': { type: 'string' },
      router: { type: 'string' },
      'api-key': { type: 'string' },
      'api-key-file': { type: 'string' },
      concurrency: { type: 'string' },
      rate: { type: 'string' },
      'lock-ms': { type: 'string' },
      id: { type: 'string' },
      'upkeep-every-ms': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      ...TLS_OPTIONS,
    },
  });
  const url = redisUrlArg(values['redis-url'] ?? process.env.REDIS_URL);
  if (!url) throw new UsageError('--redis-url is required (or REDIS_URL)');
  const upkeepEveryMs = intArg('upkeep-every-ms', values['upkeep-every-ms'], 30_000, 0);
  const tls = tlsArg(values);
  if (!values.router) throw new UsageError("--router is required: the router's HTTP API, e.g. http://127.0.0.1:8000");
  if (!/^https?:\/\/[^/]+/.test(values.router)) throw new UsageError(`--router must be an http:// or https:// URL, got '${values.router}'`);
  const concurrency = intArg('concurrency', values.concurrency, 4, 1);
  const rate = values.rate === undefined ? undefined : intArg('rate', values.rate, 0, 1);
  const apiKey = values['api-key'] ?? (values['api-key-file'] ? apiKeyFromFile(values['api-key-file']) : process.env.KCACHE_API_KEY);
  const redis = await connectJobsRedis(url, (m) => new UsageError(m));
  const warning = await evictionWarning(redis);
  if (warning) process.stderr.write(`kcache: warning: ${warning}\n`);
  const runnerId = values.id ?? `batch-${process.pid}`;
  const metrics = new JobsMetrics(runnerId);
  const metricsServer =
    values['metrics-port'] === undefined
      ? null
      : await serveMetrics(metrics.registry, values['metrics-host'] ?? '127.0.0.1', intArg('metrics-port', values['metrics-port'], 0, 0));
  const snapshots = grpcSnapshots(tls);
  const upkeep =
    upkeepEveryMs > 0 ? await startUpkeep(redis, { everyMs: upkeepEveryMs, snapshotOf: snapshots, onRun: (r) => metrics.upkeep(r) }) : null;
  const runner = await startBatchRunner({
    onResult: (r) => metrics.batchRequests.inc({ outcome: r.ok ? 'completed' : 'failed' }),
    redis,
    routerUrl: values.router,
    // --api-key-file: the first key of a router's API keys file (a mounted Secret)
    apiKey,
    concurrency,
    ratePerSecond: rate,
    lockMs: values['lock-ms'] === undefined ? undefined : intArg('lock-ms', values['lock-ms'], 30_000, 100),
  });
  process.stdout.write(
    `${JSON.stringify({
      event: 'ready',
      batchRunner: runnerId,
      router: values.router,
      concurrency,
      rate: rate ?? null,
      upkeepEveryMs,
      metricsPort: metricsServer?.port ?? null,
      redis: redactRedisUrl(url),
    })}\n`,
  );
  await untilSignal(async () => {
    await runner.close();
    await upkeep?.close();
    snapshots.close();
    await metricsServer?.close();
    redis.disconnect();
  }, 0);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Waits for SIGTERM/SIGINT, runs `stop`, prints the lifecycle as JSON lines. */
async function untilSignal(stop: () => Promise<void>, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      process.stdout.write(`${JSON.stringify({ event: 'draining', signal, graceMs })}\n`);
      stop().then(resolve, resolve);
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  process.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`);
}

async function serveRouter(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      port: { type: 'string' },
      'redis-url': { type: 'string' },
      policy: { type: 'string' },
      id: { type: 'string' },
      host: { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'max-migrations': { type: 'string' },
      'first-token-timeout-ms': { type: 'string' },
      'inter-token-timeout-ms': { type: 'string' },
      'max-prompt-bytes': { type: 'string' },
      'max-inflight': { type: 'string' },
      'worker-keepalive-ms': { type: 'string' },
      'tenant-requests-per-s': { type: 'string' },
      'tenant-tokens-per-s': { type: 'string' },
      'log-level': { type: 'string' },
      'http-port': { type: 'string' },
      'chat-template': { type: 'string' },
      ...AUTH_OPTIONS,
      ...TLS_OPTIONS,
      ...CACHE_AWARE_OPTIONS,
    },
  });
  if (values.port === undefined) throw new UsageError('--port is required');
  const maxMigrations = intArg('max-migrations', values['max-migrations'], 3, 0);
  const redisUrl = redisUrlArg(values['redis-url']);
  if (!redisUrl) throw new UsageError('--redis-url is required');
  const cacheAware = cacheAwareArgs(values);
  const auth = apiKeysArg(values, true);
  const workerTls = tlsArg(values);
  const level = values['log-level'] ?? 'info';
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`);
  const rate = (name: 'tenant-requests-per-s' | 'tenant-tokens-per-s') => {
    const n = numArg(name, values[name], 0);
    if (n < 0) throw new UsageError(`--${name} must be a number >= 0, got '${values[name]}'`);
    return n;
  };
  const tenantLimits = { requestsPerS: rate('tenant-requests-per-s'), tokensPerS: rate('tenant-tokens-per-s') };
  const policy = values.policy ?? 'cache_aware';
  if (!(POLICIES as readonly string[]).includes(policy))
    throw new UsageError(`--policy must be one of ${POLICIES.join(', ')}, got '${policy}'`);
  const chatTemplate = chatTemplateArg(values['chat-template']);
  if (!auth) process.stderr.write(`${NO_AUTH_WARNING}\n`);
  const router = await startRouter({
    apiKeys: auth?.keys ?? null,
    tenantLimits,
    workerTls,
    // one JSON line per request on stdout, beside the lifecycle events
    log: pino({ level, base: values.id ? { router: values.id } : {} }),
    httpPort: values['http-port'] === undefined ? null : intArg('http-port', values['http-port'], 0, 0),
    chatTemplate,
    port: intArg('port', values.port, 0, 0),
    host: values.host,
    redisUrl,
    policy: policy as PolicyName,
    cacheAware,
    routerId: values.id,
    metricsPort: values['metrics-port'] === undefined ? null : intArg('metrics-port', values['metrics-port'], 0, 0),
    metricsHost: values['metrics-host'],
    maxMigrations,
    firstTokenTimeoutMs: intArg('first-token-timeout-ms', values['first-token-timeout-ms'], 120_000, 1),
    interTokenTimeoutMs: intArg('inter-token-timeout-ms', values['inter-token-timeout-ms'], 5_000, 1),
    maxPromptBytes: values['max-prompt-bytes'] === undefined ? undefined : intArg('max-prompt-bytes', values['max-prompt-bytes'], 0, 1),
    maxInFlight: intArg('max-inflight', values['max-inflight'], 0, 0),
    workerKeepaliveMs: intArg('worker-keepalive-ms', values['worker-keepalive-ms'], 1000, 0),
  });
  process.stdout.write(
    `${JSON.stringify({
      event: 'ready',
      routerId: router.routerId,
      address: router.address,
      metricsPort: router.metricsPort,
      http: router.httpPort === null ? undefined : `http://${router.address.split(':')[0]}:${router.httpPort}`,
      policy,
      auth: auth ? 'api-keys' : 'off',
    })}\n`,
  );
  await untilSignal(() => router.close(), 0);
}

/** Runs a worker in the foreground until SIGTERM/SIGINT, then drains and exits 0. */
export async function serveCommand(argv: string[]): Promise<void> {
  const [role, ...rest] = argv;
  if (role === 'router') return serveRouter(rest);
  if (role === 'batch') return serveBatch(rest);
  if (role !== 'worker') throw new UsageError(`unknown role '${role ?? ''}' (available: worker, router, batch)`);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      model: { type: 'string' },
      port: { type: 'string' },
      'redis-url': { type: 'string' },
      id: { type: 'string' },
      host: { type: 'string' },
      'advertise-host': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'num-blocks': { type: 'string' },
      'block-size': { type: 'string' },
      threads: { type: 'string' },
      'max-num-seqs': { type: 'string' },
      'max-batched-tokens': { type: 'string' },
      'max-background-prefill-tokens': { type: 'string' },
      'max-waiting': { type: 'string' },
      'drain-grace-ms': { type: 'string' },
      'lease-ttl-ms': { type: 'string' },
      'redis-wait-ms': { type: 'string' },
      'kv-cache-bytes': { type: 'string' },
      'served-model-name': { type: 'string' },
      'warm-prompts': { type: 'string' },
      quantize: { type: 'string' },
      'kv-cache-dtype': { type: 'string' },
      ...TLS_OPTIONS,
      ...ATTENTION_OPTIONS,
      ...OFFLOAD_OPTIONS,
    },
  });
  if (!values.model) throw new UsageError('--model is required');
  const model = modelRefArg(values.model, values.quantize);
  const kvDtype = kvDtypeArg(values['kv-cache-dtype']);
  if (values.port === undefined) throw new UsageError('--port is required');
  const opt = (name: string, v: string | undefined, min = 1) => (v === undefined ? undefined : intArg(name, v, 0, min));
  const grace = intArg('drain-grace-ms', values['drain-grace-ms'], 30_000, 0);
  const attention = attentionArgs(values);
  const offload = offloadArgs(values);
  const tls = tlsArg(values);
  const warmPrompts = values['warm-prompts'] === undefined ? undefined : warmPromptsArg(values['warm-prompts']);
  const progress = stderrLoadProgress(model);
  const worker = await startWorker({
    warmPrompts,
    onLoadProgress: progress.update,
    tls,
    servedModelName: values['served-model-name'],
    model,
    port: intArg('port', values.port, 0, 0),
    host: values.host,
    advertiseHost: values['advertise-host'],
    redisUrl: redisUrlArg(values['redis-url']) ?? null,
    workerId: values.id,
    metricsPort: values['metrics-port'] === undefined ? null : intArg('metrics-port', values['metrics-port'], 0, 0),
    metricsHost: values['metrics-host'],
    numBlocks: opt('num-blocks', values['num-blocks']),
    blockSize: opt('block-size', values['block-size']),
    threads: opt('threads', values.threads),
    maxNumSeqs: opt('max-num-seqs', values['max-num-seqs']),
    maxBatchedTokens: opt('max-batched-tokens', values['max-batched-tokens']),
    maxBackgroundPrefillTokens: opt('max-background-prefill-tokens', values['max-background-prefill-tokens']),
    maxWaiting: opt('max-waiting', values['max-waiting'], 0),
    leaseTtlMs: opt('lease-ttl-ms', values['lease-ttl-ms'], 100),
    redisWaitMs: opt('redis-wait-ms', values['redis-wait-ms'], 0),
    kvCacheBytes: opt('kv-cache-bytes', values['kv-cache-bytes']),
    kvDtype,
    ...attention,
    ...offload,
  }).catch((e: unknown) => {
    progress.abort();
    throw e;
  });
  const info = worker.engine.info();
  process.stdout.write(
    `${JSON.stringify({
      event: 'ready',
      workerId: worker.workerId,
      address: worker.address,
      metricsPort: worker.metricsPort,
      model: info.modelId,
      backend: info.backend,
      backendNote: info.backendNote,
      kvBlocks: info.numBlocks,
      kvCacheDtype: info.kvDtype,
      blockSize: info.blockSize,
      attention: info.attention,
      offloadBytes: offload.offloadBytes,
      offloadDiskBytes: offload.offloadDiskBytes,
      peerFetch: offload.peerFetch,
      redis: values['redis-url'] ?? null,
    })}\n`,
  );
  await untilSignal(() => worker.drain(grace), grace);
}
