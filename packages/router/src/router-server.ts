/**
 * The router: the public kcache.v1.Generate service over gRPC, and OpenAI's API over HTTP
 * (http/server.ts), both served by one `serve` per request. It authenticates the caller (API keys,
 * tenants, rate limits: tenancy/), checks the input, tokenizes text (Tokenizers), hashes the
 * prompt's cacheable blocks once, asks the block index for matches (bounded by lookupTimeoutMs),
 * and hands the decision and the retries to the routing core (route.ts) with the forwarder
 * (forward.ts) as its attempt. Workers come from their
 * leases (WorkerPool); the index is kept current by an IndexConsumer. If Redis is away, it keeps
 * the last known workers and routes least-loaded until the index answers again.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { connectRedis, IndexConsumer, liveWorkers, type MatchResult, RedisBlockIndex, redisInstance } from '@kcache/block-index';
import { serveMetrics } from '@kcache/metrics';
import { type ChatTemplate, loadChatTemplate } from '@kcache/models';
import {
  type ChatMessage__Output,
  type ClusterTls,
  fetchSnapshot,
  type GenerateHandlers,
  type GenerateRequest__Output,
  PUBLIC_SERVICE,
  promptBlockHashes,
  protos,
  ROUTER_METADATA,
  type WorkerLease,
} from '@kcache/protocol';
import { type CacheAwareConfig, makePolicy, type PolicyName, RecentPrefixes } from '@kcache/routing';
import { HealthImplementation } from 'grpc-health-check';
import { type Logger, pino } from 'pino';
import { forward, type StreamProgress } from './forward.js';
import { startHttp } from './http/server.js';
import { RouterMetrics } from './metrics.js';
import { continuation } from './migrate.js';
import { WorkerPool } from './pool.js';
import { type Router, route } from './route.js';
import { grpcSink, type ResponseSink } from './sink.js';
import { type ApiKeys, bearerToken, type Limits, type Tenant, TenantLimits, tenantCacheSalt, tenantRequestId } from './tenancy/index.js';
import { Tokenizers } from './tokenizers.js';

export interface RouterOptions {
  port: number;
  host?: string;
  /** redis://host:port, or redis-cluster://host:port,host:port for a Redis Cluster. */
  redisUrl: string;
  policy?: PolicyName;
  cacheAware?: Partial<CacheAwareConfig>;
  routerId?: string;
  metricsPort?: number | null;
  /** Interface of the metrics endpoint (default: host); e.g. an internal address while gRPC faces clients. */
  metricsHost?: string;
  /** How often the worker list is refreshed from the leases (ms). */
  refreshMs?: number;
  /** Longest the router waits for the index before routing least-loaded (ms). */
  lookupTimeoutMs?: number;
  maxAttempts?: number;
  /** How many times one stream may move to another worker after its worker failed mid-stream (default 3; 0: never). */
  maxMigrations?: number;
  /** A worker silent this long before its first message (queued, prefilling) is taken for frozen (default 120 s). */
  firstTokenTimeoutMs?: number;
  /** ... or this long between two messages of a stream (default 5 s). */
  interTokenTimeoutMs?: number;
  /**
   * Longest text prompt in UTF-8 bytes, refused before it is tokenized (default: 16 bytes per token
   * of the model's context, which no tokenizer's average exceeds).
   */
  maxPromptBytes?: number;
  /** Admission limit: requests this router serves at once; more get RESOURCE_EXHAUSTED (default 0: no limit). */
  maxInFlight?: number;
  breakerThreshold?: number;
  breakerOpenMs?: number;
  /** gRPC keepalive to workers: ping interval and timeout (ms; default 1000, 0: off). A frozen worker is cut off within twice this. */
  workerKeepaliveMs?: number;
  /**
   * Client API keys (`authorization: Bearer <key>` on every call of the Generate service), each
   * naming a tenant; null: authentication off, every caller is one anonymous tenant.
   */
  apiKeys: ApiKeys | null;
  /** Rate limits of a tenant whose key names none (0 or unset: unlimited). */
  tenantLimits?: Limits;
  /** Mutual TLS to the workers (this router's certificate and the cluster CA); null: plaintext. */
  workerTls?: ClusterTls | null;
  /** One JSON line per request (pino); default: none. Never the prompt or output text. */
  log?: Logger;
  /** OpenAI's HTTP API on this port (0: a free one); null or unset: none. */
  httpPort?: number | null;
  /** A chat template file for every model (default: each model's own, from its tokenizer_config.json). */
  chatTemplate?: string;
}

export interface RunningRouter {
  routerId: string;
  address: string;
  port: number;
  metricsPort: number | null;
  /** The OpenAI-compatible HTTP API's port (null: not served). */
  httpPort: number | null;
  metrics: RouterMetrics;
  /** Re-reads the worker leases now (tests; the router also does it every refreshMs). */
  refresh(): Promise<void>;
  /** Applies pending KV events now (tests; the consumer also runs continuously). */
  syncIndex(): Promise<void>;
  close(): Promise<void>;
}

class RouteError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly metadata?: grpc.Metadata,
  ) {
    super(message);
  }
}

/** How long a client told RESOURCE_EXHAUSTED should wait before trying again (trailing metadata `retry-after-ms`). */
const OVERLOAD_RETRY_AFTER_MS = 500;

function retryAfter(ms = OVERLOAD_RETRY_AFTER_MS): grpc.Metadata {
  const trailer = new grpc.Metadata();
  trailer.set('retry-after-ms', String(ms));
  return trailer;
}

export async function startRouter(o: RouterOptions): Promise<RunningRouter> {
  const routerId = o.routerId ?? `router-${randomUUID().slice(0, 8)}`;
  const policyName: PolicyName = o.policy ?? 'cache_aware';
  const router: Router = { policy: makePolicy(policyName, o.cacheAware), policyName, maxAttempts: o.maxAttempts ?? 3 };
  const metrics = new RouterMetrics(routerId);
  const lookupTimeoutMs = o.lookupTimeoutMs ?? 50;
  const maxMigrations = o.maxMigrations ?? 3;
  const timeouts = { firstMs: o.firstTokenTimeoutMs ?? 120_000, betweenMs: o.interTokenTimeoutMs ?? 5_000 };

  const redisOpts = { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 200, lazyConnect: true };
  const redis = connectRedis(o.redisUrl, redisOpts);
  const reader = connectRedis(o.redisUrl, redisOpts);
  // /v1/files and /v1/batches: BullMQ's queues want a connection that never gives up on a command
  const batchRedis =
    o.httpPort !== null && o.httpPort !== undefined
      ? connectRedis(o.redisUrl, { maxRetriesPerRequest: null, retryStrategy: () => 200 })
      : null;
  for (const c of [redis, reader, ...(batchRedis ? [batchRedis] : [])]) c.on('error', () => {}); // reconnects by itself; routing falls back meanwhile
  await redis.connect().catch(() => {});
  await reader.connect().catch(() => {});
  const index = new RedisBlockIndex(redis);

  const recent = new RecentPrefixes();
  const pool = new WorkerPool(routerId, {
    breakerThreshold: o.breakerThreshold,
    breakerOpenMs: o.breakerOpenMs,
    keepaliveMs: o.workerKeepaliveMs,
    tls: o.workerTls,
    events: {
      removed: (id) => recent.forgetWorker(id),
      unreachable: (id) => metrics.connectionsLost.inc({ worker: id }),
    },
  });
  const metadata = new grpc.Metadata();
  metadata.set(ROUTER_METADATA, routerId);
  metrics.observe(pool);
  const tokenizers = new Tokenizers();
  const chatTemplates = new Map<string, ChatTemplate | null>();
  const log = o.log ?? pino({ level: 'silent' });
  const limits = new TenantLimits(o.tenantLimits);
  const ANONYMOUS: Tenant = { id: '' };
  /** The caller's tenant, from its API key (the anonymous tenant when authentication is off). */
  const authenticate = (authorization: readonly (string | Buffer)[]): Tenant => {
    if (!o.apiKeys) return ANONYMOUS;
    const key = bearerToken(authorization);
    const tenant = key === null ? null : o.apiKeys.tenant(key);
    if (!tenant)
      throw new RouteError(
        grpc.status.UNAUTHENTICATED,
        key === null ? 'authorization: send "Bearer <API key>" metadata' : 'authorization: unknown API key',
      );
    return tenant;
  };

  // NOT_SERVING until the router knows a worker: a load balancer must not send it traffic it can only fail
  const health = new HealthImplementation({ '': 'NOT_SERVING', [PUBLIC_SERVICE]: 'NOT_SERVING' });
  let closing = false;
  const refresh = async () => {
    let leases: WorkerLease[];
    let instance: string;
    try {
      [instance, leases] = await Promise.all([redisInstance(redis), liveWorkers(redis)]);
      metrics.redisUp.set(1);
    } catch {
      metrics.redisUp.set(0);
      return; // Redis away: keep the workers we know
    }
    metrics.liveWorkers.set(leases.length);
    pool.sync(leases, instance);
    if (closing) return;
    const status = pool.all().length > 0 ? 'SERVING' : 'NOT_SERVING';
    health.setStatus('', status);
    health.setStatus(PUBLIC_SERVICE, status);
  };
  await refresh();
  const refreshTimer = setInterval(() => void refresh(), o.refreshMs ?? 500);
  refreshTimer.unref();

  const consumer = new IndexConsumer(index, redis, reader, (lease) => {
    const client = pool.get(lease.workerId)?.client;
    if (!client) return Promise.reject(new Error(`worker ${lease.workerId} is not in the pool yet`));
    return fetchSnapshot(client, 2000);
  });
  consumer.start();

  const pickModel = (requested: string): string => {
    const models = pool.models();
    if (models.size === 0) throw new RouteError(grpc.status.UNAVAILABLE, 'no live workers');
    if (requested) {
      if (!models.has(requested)) throw new RouteError(grpc.status.NOT_FOUND, `model: no live worker serves '${requested}'`);
      return requested;
    }
    if (models.size > 1)
      throw new RouteError(grpc.status.INVALID_ARGUMENT, `model: required, the cluster serves ${[...models].join(', ')}`);
    return [...models][0] as string;
  };

  /**
   * The prompt's token ids. Limits come first: a text longer than any prompt the model's context
   * could hold is refused before tokenizing (long texts are tokenized on threads, but still cost
   * CPU), and a prompt that leaves no room in the context before it reaches a worker.
   */
  const toIds = async (
    r: Partial<Pick<GenerateRequest__Output, 'text' | 'tokenIds' | 'chat'>>,
    modelId: string,
    addBos = true,
  ): Promise<number[]> => {
    // the template puts BOS where the model wants it, as apply_chat_template does
    if (r.chat) return toIds({ text: renderChat(r.chat.messages ?? [], modelId) }, modelId, false);
    const maxModelLen = pool.maxModelLen(modelId);
    const check = (ids: number[], field: string) => {
      if (maxModelLen > 0 && ids.length >= maxModelLen)
        throw new RouteError(
          grpc.status.INVALID_ARGUMENT,
          `${field}: a prompt of ${ids.length} tokens leaves no room in the context length ${maxModelLen}`,
        );
      return ids;
    };
    if (r.tokenIds) return check(r.tokenIds.ids ?? [], 'token_ids');
    if (typeof r.text === 'string') {
      const limit = o.maxPromptBytes ?? (maxModelLen > 0 ? maxModelLen * 16 : Number.POSITIVE_INFINITY);
      const bytes = Buffer.byteLength(r.text, 'utf8');
      if (bytes > limit)
        throw new RouteError(
          grpc.status.INVALID_ARGUMENT,
          `text: ${bytes} bytes exceeds the limit of ${limit} bytes for this model (context ${maxModelLen} tokens)`,
        );
      const ids = await tokenizers.encode(pool.modelRef(modelId), r.text, addBos);
      if (!ids) throw new RouteError(grpc.status.INVALID_ARGUMENT, `text: model ${modelId} has no tokenizer; send token_ids`);
      return check(ids, 'text');
    }
    throw new RouteError(grpc.status.INVALID_ARGUMENT, 'input: one of text or token_ids is required');
  };

  /** A conversation as the prompt text of `modelId`'s chat template (the router's --chat-template first). */
  const renderChat = (messages: readonly ChatMessage__Output[], modelId: string): string => {
    if (messages.length === 0) throw new RouteError(grpc.status.INVALID_ARGUMENT, 'chat.messages: at least one message is required');
    for (const [i, m] of messages.entries())
      if (!m.role) throw new RouteError(grpc.status.INVALID_ARGUMENT, `chat.messages[${i}].role: required`);
    if (!chatTemplates.has(modelId)) {
      try {
        chatTemplates.set(modelId, loadChatTemplate(pool.modelRef(modelId), o.chatTemplate));
      } catch (e) {
        throw new RouteError(grpc.status.FAILED_PRECONDITION, (e as Error).message);
      }
    }
    const template = chatTemplates.get(modelId);
    if (!template)
      throw new RouteError(
        grpc.status.INVALID_ARGUMENT,
        `chat.messages: model ${modelId} has no chat template (start the router with --chat-template FILE)`,
      );
    try {
      return template.render(messages.map((m) => ({ role: m.role ?? '', content: m.content ?? '' })));
    } catch (e) {
      throw new RouteError(grpc.status.INVALID_ARGUMENT, `chat.messages: the chat template failed: ${(e as Error).message}`);
    }
  };

  /** The index's matches, or null if it does not answer within lookupTimeoutMs. */
  const lookup = async (hashes: string[], workers: string[]): Promise<Map<string, MatchResult> | null> => {
    const t = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const m = await Promise.race([
        index.findMatches(hashes, workers),
        new Promise<null>((res) => {
          timer = setTimeout(() => res(null), lookupTimeoutMs);
        }),
      ]);
      if (m) metrics.lookupLatency.observe((performance.now() - t) / 1000);
      return m;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  };

  const { definition, v1 } = protos();
  const server = new grpc.Server();
  health.addToServer(server);
  new ReflectionService(definition, { services: [PUBLIC_SERVICE] }).addToServer(server);

  let inFlight = 0;
  /**
   * One request from any front door (gRPC or HTTP): authenticate, check, tokenize, hash, look
   * up, route, forward, retry, migrate; the answer goes to `sink`.
   */
  const serve = async (r: GenerateRequest__Output, authorization: readonly (string | Buffer)[], sink: ResponseSink): Promise<void> => {
    const t0 = performance.now();
    inFlight++;
    let tenant = ANONYMOUS;
    const progress: StreamProgress = { tokens: [], textLen: 0, migrations: 0 };
    const requestId = r.requestId || randomUUID();
    try {
      tenant = authenticate(authorization);
      if (o.maxInFlight && inFlight > o.maxInFlight)
        throw new RouteError(
          grpc.status.RESOURCE_EXHAUSTED,
          `the router is serving its limit of ${o.maxInFlight} requests (--max-inflight)`,
          retryAfter(),
        );
      if (pool.all().length === 0) await refresh(); // knows no worker yet: look now, not at the next poll
      const modelId = pickModel(r.model ?? '');
      const ids = await toIds(r, modelId);
      if (ids.length === 0) throw new RouteError(grpc.status.INVALID_ARGUMENT, 'input: the prompt is empty');
      const admission = limits.admit(tenant.id, tenant, ids.length);
      if (!admission.ok)
        throw new RouteError(
          grpc.status.RESOURCE_EXHAUSTED,
          `tenant ${tenant.id}: over its ${admission.what} per second limit`,
          retryAfter(admission.retryAfterMs),
        );
      if (pool.saturated(modelId))
        throw new RouteError(
          grpc.status.RESOURCE_EXHAUSTED,
          `every worker serving ${modelId} is at its limit of running and queued requests`,
          retryAfter(),
        );
      // worker_id pins the request to one worker (operators' cache warm-up): only it is a candidate
      const pinned = r.workerId || null;
      if (pinned && !pool.candidates(modelId).some((c) => c.id === pinned))
        throw new RouteError(grpc.status.NOT_FOUND, `worker_id: no live worker '${pinned}' serves ${modelId}`);
      const priority = r.priority ?? 0;
      const candidates = () => pool.candidates(modelId, priority).filter((c) => !pinned || c.id === pinned);
      const blockSize = pool.all().find((w) => w.lease.modelId === modelId)?.lease.blockSize as number;
      const cacheSalt = tenantCacheSalt(tenant.id, r.cacheSalt ?? '');
      const original = {
        requestId: tenantRequestId(tenant.id, requestId),
        tokenIds: ids,
        sampling: r.sampling,
        stop: r.stop,
        cacheSalt,
        kcacheTopn: r.kcacheTopn,
        priority,
      };
      const left: string[] = []; // workers this stream failed on mid-stream
      for (;;) {
        if (sink.cancelled) return; // the client left while its stream was moving
        const request = continuation(original, progress);
        const hashes = promptBlockHashes(request.tokenIds, blockSize, { modelId, cacheSalt });
        const matches = await lookup(
          hashes,
          candidates().map((c) => c.id),
        );
        const routedHere = recent.match(hashes);
        const failures: { code: grpc.status; details: string }[] = [];
        let migrate: { code: grpc.status; details: string } | null = null;
        const outcome = await route(
          router,
          { hashes, promptTokens: request.tokenIds.length, blockSize },
          () => ({ candidates: candidates(), matches, recent: routedHere }),
          async (choice) => {
            const w = pool.get(choice.worker);
            if (pool.atLimit(choice.worker)) {
              // it could only refuse: answer for it, without the round trip
              failures.push({ code: grpc.status.RESOURCE_EXHAUSTED, details: `worker ${choice.worker} is at its request limit` });
              return 'retry';
            }
            if (!w?.breaker.allow()) return 'skip';
            metrics.decisions.inc({ policy: choice.policy, reason: choice.reason });
            w.routedBlocks += choice.newBlocks;
            recent.record(hashes, choice.worker);
            const mayMigrate = progress.migrations < maxMigrations;
            // peer fetch: name the worker holding more of this prompt (the chosen one may pull from it)
            const peer = choice.peer ? pool.get(choice.peer.worker) : undefined;
            const res = await forward(w, {
              sink,
              request:
                peer && choice.peer
                  ? { ...request, peerAddress: peer.lease.address, peerWorkerId: choice.peer.worker, peerBlocks: choice.peer.blocks }
                  : request,
              metadata,
              metrics,
              t0,
              predictedCachedTokens: choice.predictedCachedTokens,
              progress,
              mayMigrate,
              timeouts,
            });
            if (res.outcome === 'retry') {
              failures.push(res);
              return 'retry';
            }
            if (res.outcome === 'migrate') {
              migrate = res;
              left.push(choice.worker);
            }
            return 'done';
          },
          left,
        );
        if (migrate) {
          const { code } = migrate as { code: grpc.status };
          progress.migrations++;
          metrics.migrations.inc({ cause: grpc.status[code] ?? String(code) });
          continue;
        }
        if (outcome.served) return;
        const tried = [...left, ...outcome.tried].join(', ') || 'none';
        // every worker tried was full: backpressure the client must see, not an outage
        if (failures.length > 0 && failures.every((f) => f.code === grpc.status.RESOURCE_EXHAUSTED))
          throw new RouteError(
            grpc.status.RESOURCE_EXHAUSTED,
            `no worker can take the request now (tried ${tried}): ${failures.at(-1)?.details}`,
            retryAfter(),
          );
        const sent = progress.tokens.length > 0 ? ` after ${progress.tokens.length} tokens` : '';
        throw new RouteError(grpc.status.UNAVAILABLE, `no worker could take the request${sent} (tried ${tried})`);
      }
    } catch (e) {
      const err = e instanceof RouteError ? e : new RouteError(grpc.status.INTERNAL, (e as Error).message);
      metrics.requests.inc({ outcome: 'rejected' });
      progress.status = grpc.status[err.code] ?? String(err.code);
      sink.fail(err.code, err.message, err.metadata);
    } finally {
      inFlight--;
      if (progress.tokens.length > 0) limits.charge(tenant.id, tenant, progress.tokens.length);
      const status = progress.status ?? (sink.cancelled ? 'CANCELLED' : 'UNKNOWN');
      const level = status === 'OK' || status === 'CANCELLED' ? 'info' : 'warn';
      if (log.isLevelEnabled(level))
        log[level](
          {
            requestId,
            tenant: tenant.id || undefined,
            model: r.model || undefined,
            worker: progress.final?.workerId,
            promptTokens: progress.final?.promptTokens,
            cachedTokens: progress.final?.cachedTokens,
            completionTokens: progress.tokens.length,
            ttftMs: progress.ttftMs === undefined ? undefined : Math.round(progress.ttftMs),
            durationMs: Math.round(performance.now() - t0),
            migrations: progress.migrations || undefined,
            status,
          },
          'request',
        );
    }
  };
  const handlers: GenerateHandlers = {
    Generate: (call) => serve(call.request, call.metadata.get('authorization'), grpcSink(call)),
    async Tokenize(call, cb) {
      try {
        authenticate(call.metadata.get('authorization'));
        const modelId = pickModel(call.request.model ?? '');
        cb(null, { tokenIds: await toIds({ text: call.request.text ?? '' }, modelId) });
      } catch (e) {
        const err = e as RouteError;
        cb({ code: err.code ?? grpc.status.INTERNAL, details: err.message });
      }
    },
    ListModels(call, cb) {
      try {
        authenticate(call.metadata.get('authorization'));
      } catch (e) {
        const err = e as RouteError;
        cb({ code: err.code, details: err.message });
        return;
      }
      const byModel = new Map<string, { id: string; workers: number; blockSize: number; workerIds: string[] }>();
      for (const { lease } of pool.all()) {
        const m = byModel.get(lease.modelId) ?? { id: lease.modelId, workers: 0, blockSize: lease.blockSize, workerIds: [] };
        m.workers++;
        m.workerIds.push(lease.workerId);
        byModel.set(m.id, m);
      }
      for (const m of byModel.values()) m.workerIds.sort();
      cb(null, { models: [...byModel.values()] });
    },
  };
  server.addService(v1.Generate.service, handlers);

  const host = o.host ?? '127.0.0.1';
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:${o.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );

  const http =
    o.httpPort !== null && o.httpPort !== undefined
      ? await startHttp({
          host,
          port: o.httpPort,
          serve,
          models: () => [...pool.models()],
          authenticate: (authorization) => authenticate(authorization).id,
          batchRedis: batchRedis ?? undefined,
          tokenText: (model, tokenId) => {
            const tok = model ? tokenizers.get(pool.modelRef(model)) : null;
            return tok ? tok.decode([tokenId]) : `token_id:${tokenId}`;
          },
          chatPrompt: async (model, messages, authorization) => {
            authenticate(authorization);
            if (pool.all().length === 0) await refresh();
            const modelId = pickModel(model);
            return { modelId, ids: await toIds({ chat: { messages } }, modelId) };
          },
        })
      : null;

  const metricsServer =
    o.metricsPort !== null && o.metricsPort !== undefined
      ? await serveMetrics(metrics.registry, o.metricsHost ?? host, o.metricsPort)
      : null;
  const metricsPort = metricsServer?.port ?? null;

  return {
    routerId,
    address: `${host}:${port}`,
    port,
    metricsPort,
    httpPort: http?.port ?? null,
    metrics,
    refresh,
    syncIndex: () => consumer.poll(),
    async close() {
      closing = true;
      clearInterval(refreshTimer);
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(PUBLIC_SERVICE, 'NOT_SERVING');
      await http?.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
      await consumer.stop();
      pool.close();
      await tokenizers.close();
      redis.disconnect();
      reader.disconnect();
      batchRedis?.disconnect();
      await metricsServer?.close();
    },
  };
}
