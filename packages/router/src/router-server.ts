/**
 * The router: the public kcache.v1.Generate service. For each request it tokenizes (text input),
 * hashes the prompt's full blocks, asks the Redis block index how long a prefix each live worker
 * holds, lets the routing policy choose, and forwards the stream. A worker that is unreachable
 * or fails before its first token is retried on the next choice (never the same worker), behind
 * a per-worker circuit breaker. If Redis is away, it keeps the last known workers and routes
 * least-loaded until the index answers again.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { hashBlocks } from '@kcache/block-hash';
import { IndexConsumer, RedisBlockIndex, type WorkerLease } from '@kcache/block-index';
import { resolveModel, type Tokenizer } from '@kcache/engine';
import { serveMetrics } from '@kcache/metrics';
import {
  type CacheAwareConfig,
  leastLoadedPolicy,
  makePolicy,
  type PolicyName,
  RecentPrefixes,
  type RoutingPolicy,
  type WorkerView,
} from '@kcache/routing';
import { LOADER_OPTIONS, protoDir, workerClientConstructor } from '@kcache/worker';
import { HealthImplementation } from 'grpc-health-check';
import { Redis } from 'ioredis';
import { CircuitBreaker } from './breaker.js';
import { RouterMetrics } from './metrics.js';

export interface RouterOptions {
  port: number;
  host?: string;
  redisUrl: string;
  policy?: PolicyName;
  cacheAware?: Partial<CacheAwareConfig>;
  routerId?: string;
  metricsPort?: number | null;
  /** How often the worker list is refreshed from the leases (ms). */
  refreshMs?: number;
  /** Longest the router waits for the index before routing least-loaded (ms). */
  lookupTimeoutMs?: number;
  maxAttempts?: number;
  breakerThreshold?: number;
  breakerOpenMs?: number;
}

export interface RunningRouter {
  routerId: string;
  address: string;
  port: number;
  metricsPort: number | null;
  metrics: RouterMetrics;
  /** Re-reads the worker leases now (tests; the router also does it every refreshMs). */
  refresh(): Promise<void>;
  /** Applies pending KV events now (tests; the consumer also runs continuously). */
  syncIndex(): Promise<void>;
  close(): Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped objects
type Msg = Record<string, any>;
type WorkerClient = grpc.Client & {
  Generate(req: Msg, opts: grpc.CallOptions): grpc.ClientReadableStream<Msg>;
  Snapshot(req: Msg, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Msg) => void): void;
};

interface WorkerEntry {
  lease: WorkerLease;
  client: WorkerClient;
  load: number;
  breaker: CircuitBreaker;
}

class RouteError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

// Failures before the first token that another worker may not have.
const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.ABORTED,
]);

export async function startRouter(o: RouterOptions): Promise<RunningRouter> {
  const routerId = o.routerId ?? `router-${randomUUID().slice(0, 8)}`;
  const policyName: PolicyName = o.policy ?? 'cache_aware';
  const policy: RoutingPolicy = makePolicy(policyName, o.cacheAware);
  const fallback = leastLoadedPolicy();
  const metrics = new RouterMetrics(routerId);
  const lookupTimeoutMs = o.lookupTimeoutMs ?? 50;
  const maxAttempts = o.maxAttempts ?? 3;

  const redisOpts = { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 200, lazyConnect: true };
  const redis = new Redis(o.redisUrl, redisOpts);
  const reader = new Redis(o.redisUrl, redisOpts);
  for (const c of [redis, reader]) c.on('error', () => {}); // reconnects by itself; routing falls back meanwhile
  await redis.connect().catch(() => {});
  await reader.connect().catch(() => {});
  const index = new RedisBlockIndex(redis);

  const WorkerClientCtor = workerClientConstructor();
  const workers = new Map<string, WorkerEntry>();
  const tokenizers = new Map<string, Tokenizer | null>();
  const recent = new RecentPrefixes();

  const refresh = async () => {
    let leases: WorkerLease[];
    try {
      leases = await index.liveWorkers();
      metrics.redisUp.set(1);
    } catch {
      metrics.redisUp.set(0);
      return; // Redis away: keep the workers we know
    }
    metrics.liveWorkers.set(leases.length);
    const live = new Set(leases.map((l) => l.workerId));
    for (const [id, w] of workers) {
      if (!live.has(id)) {
        recent.forgetWorker(id);
        w.client.close();
        workers.delete(id);
        metrics.workerLoad.remove({ worker: id });
        metrics.breakerState.remove({ worker: id });
      }
    }
    for (const l of leases) {
      const cur = workers.get(l.workerId);
      if (cur && cur.lease.address === l.address && cur.lease.epoch === l.epoch) continue;
      cur?.client.close();
      workers.set(l.workerId, {
        lease: l,
        client: new WorkerClientCtor(l.address, grpc.credentials.createInsecure()) as unknown as WorkerClient,
        load: cur?.load ?? 0,
        breaker: cur?.breaker ?? new CircuitBreaker(o.breakerThreshold, o.breakerOpenMs),
      });
    }
  };
  await refresh();
  const refreshTimer = setInterval(() => void refresh(), o.refreshMs ?? 500);
  refreshTimer.unref();

  const consumer = new IndexConsumer(index, reader, (lease) => {
    const w = workers.get(lease.workerId);
    const client = w?.client ?? (new WorkerClientCtor(lease.address, grpc.credentials.createInsecure()) as unknown as WorkerClient);
    return new Promise((resolve, reject) =>
      client.Snapshot({}, { deadline: Date.now() + 2000 }, (e, v) =>
        e ? reject(e) : resolve({ epoch: Number(v.epoch), seq: Number(v.seq), tier: v.tier ?? 'device', hashes: v.hashes ?? [] }),
      ),
    );
  });
  consumer.start();

  const tokenizerFor = (modelId: string): Tokenizer | null => {
    if (!tokenizers.has(modelId)) {
      try {
        tokenizers.set(modelId, resolveModel(modelId).tokenizer);
      } catch {
        tokenizers.set(modelId, null);
      }
    }
    return tokenizers.get(modelId) ?? null;
  };

  const pickModel = (requested: string): string => {
    const models = new Set([...workers.values()].map((w) => w.lease.modelId));
    if (models.size === 0) throw new RouteError(grpc.status.UNAVAILABLE, 'no live workers');
    if (requested) {
      if (!models.has(requested)) throw new RouteError(grpc.status.NOT_FOUND, `model: no live worker serves '${requested}'`);
      return requested;
    }
    if (models.size > 1)
      throw new RouteError(grpc.status.INVALID_ARGUMENT, `model: required, the cluster serves ${[...models].join(', ')}`);
    return [...models][0] as string;
  };

  const toIds = (r: Msg, modelId: string): number[] => {
    if (r.tokenIds) return r.tokenIds.ids ?? [];
    if (typeof r.text === 'string') {
      const tok = tokenizerFor(modelId);
      if (!tok) throw new RouteError(grpc.status.INVALID_ARGUMENT, `text: model ${modelId} has no tokenizer; send token_ids`);
      return tok.encode(r.text, { addBos: true });
    }
    throw new RouteError(grpc.status.INVALID_ARGUMENT, 'input: one of text or token_ids is required');
  };

  /** Streams one attempt; resolves "retry" if the worker failed before its first token. */
  const forward = (
    w: WorkerEntry,
    call: grpc.ServerWritableStream<Msg, Msg>,
    req: Msg,
    t0: number,
    predicted: number,
  ): Promise<'done' | 'retry'> =>
    new Promise((resolve) => {
      let started = false;
      let finished = false;
      w.load++;
      metrics.workerLoad.set({ worker: w.lease.workerId }, w.load);
      const upstream = w.client.Generate(req, { deadline: call.getDeadline() });
      const onCancel = () => upstream.cancel();
      call.once('cancelled', onCancel);
      const end = (outcome: 'done' | 'retry') => {
        if (finished) return;
        finished = true;
        w.load--;
        metrics.workerLoad.set({ worker: w.lease.workerId }, w.load);
        call.removeListener('cancelled', onCancel);
        resolve(outcome);
      };
      upstream.on('data', (m: Msg) => {
        if (!started) {
          started = true;
          w.breaker.success();
          metrics.ttft.observe((performance.now() - t0) / 1000);
        }
        if (m.final) {
          const actual = Number(m.final.usage?.cachedTokens ?? 0);
          metrics.actualCached.inc(actual);
          metrics.predictedCached.inc(predicted);
          metrics.cacheMisprediction.observe(actual - predicted);
        }
        call.write(m);
      });
      upstream.on('end', () => {
        if (finished) return; // grpc-js may end a stream after its error
        if (!started) w.breaker.success();
        metrics.requests.inc({ outcome: 'ok' });
        call.end();
        end('done');
      });
      upstream.on('error', (e: grpc.ServiceError) => {
        if (finished) return;
        if (call.cancelled) {
          metrics.requests.inc({ outcome: 'cancelled' });
          end('done');
          return;
        }
        if (!started && RETRYABLE.has(e.code)) {
          w.breaker.failure();
          metrics.breakerState.set({ worker: w.lease.workerId }, w.breaker.state === 'closed' ? 0 : 1);
          metrics.retries.inc({ cause: grpc.status[e.code] ?? String(e.code) });
          end('retry');
          return;
        }
        metrics.requests.inc({ outcome: 'error' });
        call.emit('error', { code: e.code, details: e.details });
        end('done');
      });
    });

  const { definition, pkg: grpcPkg } = (() => {
    const definition = protoLoader.loadSync('kcache/v1/generate.proto', { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
    return { definition, pkg: grpc.loadPackageDefinition(definition) };
  })();
  const service = (((grpcPkg.kcache as grpc.GrpcObject).v1 as grpc.GrpcObject).Generate as grpc.ServiceClientConstructor).service;
  const server = new grpc.Server();
  const health = new HealthImplementation({ '': 'SERVING', 'kcache.v1.Generate': 'SERVING' });
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);

  server.addService(service, {
    async Generate(call: grpc.ServerWritableStream<Msg, Msg>) {
      const t0 = performance.now();
      const r = call.request;
      try {
        const modelId = pickModel(r.model ?? '');
        const ids = toIds(r, modelId);
        if (ids.length === 0) throw new RouteError(grpc.status.INVALID_ARGUMENT, 'input: the prompt is empty');
        const pool = [...workers.values()].filter((w) => w.lease.modelId === modelId);
        const blockSize = pool[0]?.lease.blockSize ?? 16;
        // the worker never serves the block holding the last prompt token from its cache
        const hashes = hashBlocks(ids.slice(0, ids.length - 1), blockSize, { modelId, cacheSalt: r.cacheSalt ?? '' });
        let matches: Map<string, { matchedBlocks: number; deviceBlocks: number }> | null = null;
        const tl = performance.now();
        let timer: NodeJS.Timeout | undefined;
        try {
          matches = await Promise.race([
            index.findMatches(
              hashes,
              pool.map((w) => w.lease.workerId),
            ),
            new Promise<null>((res) => {
              timer = setTimeout(() => res(null), lookupTimeoutMs);
            }),
          ]);
          metrics.lookupLatency.observe((performance.now() - tl) / 1000);
        } catch {
          matches = null;
        } finally {
          clearTimeout(timer);
        }
        const request = {
          requestId: r.requestId || randomUUID(),
          tokenIds: ids,
          sampling: r.sampling,
          stop: r.stop,
          cacheSalt: r.cacheSalt ?? '',
          kcacheTopn: r.kcacheTopn,
        };
        const exclude = new Set<string>();
        for (let attempt = 0; attempt < maxAttempts; attempt++) {
          const allowed = pool.filter((w) => !exclude.has(w.lease.workerId) && w.breaker.state !== 'open');
          // what the index knows, or what this router sent there moments ago (not yet computed)
          const routedHere = recent.match(hashes);
          const views: WorkerView[] = allowed.map((w) => {
            const m = matches?.get(w.lease.workerId);
            // blocks only this router's memory knows of have no tier yet: credited as host tier
            return {
              id: w.lease.workerId,
              load: w.load,
              matchedBlocks: Math.max(m?.matchedBlocks ?? 0, routedHere.get(w.lease.workerId) ?? 0),
              deviceBlocks: m?.deviceBlocks ?? 0,
            };
          });
          const snapshot = { workers: views, blockSize };
          const d = matches
            ? policy(snapshot, { blockHashes: hashes, promptTokens: ids.length })
            : fallback(snapshot, { blockHashes: hashes, promptTokens: ids.length });
          if (!d) break;
          const chosen = workers.get(d.worker) as WorkerEntry;
          if (!chosen.breaker.allow()) {
            exclude.add(d.worker);
            continue;
          }
          metrics.decisions.inc({
            policy: matches ? policyName : 'least_loaded_fallback',
            reason: matches ? d.reason : 'index_unavailable',
          });
          const predicted = Math.min((matches?.get(d.worker)?.matchedBlocks ?? 0) * blockSize, ids.length - 1);
          recent.record(hashes, d.worker);
          if ((await forward(chosen, call, request, t0, predicted)) === 'done') return;
          exclude.add(d.worker);
        }
        throw new RouteError(grpc.status.UNAVAILABLE, `no worker could take the request (tried ${[...exclude].join(', ') || 'none'})`);
      } catch (e) {
        const err = e instanceof RouteError ? e : new RouteError(grpc.status.INTERNAL, (e as Error).message);
        metrics.requests.inc({ outcome: 'rejected' });
        call.emit('error', { code: err.code, details: err.message });
      }
    },
    Tokenize(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      try {
        const modelId = pickModel(call.request.model ?? '');
        cb(null, { tokenIds: toIds({ text: call.request.text ?? '' }, modelId) });
      } catch (e) {
        const err = e as RouteError;
        cb({ code: err.code ?? grpc.status.INTERNAL, details: err.message });
      }
    },
    ListModels(_call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      const byModel = new Map<string, { id: string; workers: number; blockSize: number }>();
      for (const w of workers.values()) {
        const m = byModel.get(w.lease.modelId) ?? { id: w.lease.modelId, workers: 0, blockSize: w.lease.blockSize };
        m.workers++;
        byModel.set(m.id, m);
      }
      cb(null, { models: [...byModel.values()] });
    },
  });

  const host = o.host ?? '127.0.0.1';
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:${o.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );

  const metricsServer =
    o.metricsPort !== null && o.metricsPort !== undefined ? await serveMetrics(metrics.registry, host, o.metricsPort) : null;
  const metricsPort = metricsServer?.port ?? null;

  return {
    routerId,
    address: `${host}:${port}`,
    port,
    metricsPort,
    metrics,
    refresh,
    syncIndex: () => consumer.poll(),
    async close() {
      clearInterval(refreshTimer);
      health.setStatus('', 'NOT_SERVING');
      await new Promise<void>((r) => server.tryShutdown(() => r()));
      await consumer.stop();
      for (const w of workers.values()) w.client.close();
      redis.disconnect();
      reader.disconnect();
      await metricsServer?.close();
    },
  };
}
