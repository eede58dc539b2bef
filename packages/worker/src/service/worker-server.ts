/**
 * The worker process: the engine, the scheduler and prefix cache, the serving loop, the gRPC
 * Worker service (+ grpc.health.v1 and reflection), /metrics over HTTP, and KV events and the
 * lease in Redis. startWorker() wires them; close() and drain() take them down.
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { connectRedis, type RedisClient, redactRedisUrl } from '@kcache/block-index';
import { type AttentionMode, Engine, type KCacheSettings, type KvDtype } from '@kcache/engine';
import { serveMetrics } from '@kcache/metrics';
import { type GenerationDefaults, type ModelSpec, resolveModel } from '@kcache/models';
import {
  type ClusterTls,
  promptBlockHashes,
  protos,
  ROUTER_METADATA,
  WORKER_SERVICE,
  type WorkerGenerateRequest__Output,
  type WorkerHandlers,
  workerServerCredentials,
} from '@kcache/protocol';
import { HealthImplementation } from 'grpc-health-check';
import { EngineLoop, type GenerateInput } from '../engine-loop.js';
import { WorkerError } from '../errors.js';
import { KvEventPublisher } from '../kv-events/publisher.js';
import { WorkerMetrics } from '../metrics.js';
import { EngineOffload } from '../offload/engine-offload.js';
import { OffloadTiers } from '../offload/tiers.js';
import { installBlocks } from '../peer-fetch/install.js';
import { PeerFetcher } from '../peer-fetch/peer-fetch.js';
import { BlockManager, type KvEvent } from '../scheduler/block-manager.js';
import { Scheduler } from '../scheduler/scheduler.js';

/** Most blocks one FetchBlocks call may ask for (a prompt of 4,096 blocks is 65,536 tokens at 16 a block). */
const MAX_FETCH_BLOCKS = 4096;
/** How long shutdown waits for Redis to take the lease back. */
const REDIS_SHUTDOWN_MS = 3000;
export interface WorkerOptions {
  model: string | ModelSpec;
  host?: string;
  /** The host routers reach this worker at, published in its lease (default: host). */
  advertiseHost?: string;
  /** gRPC port; 0 picks a free one. */
  port: number;
  /** Redis for KV events and the lease; null runs standalone. */
  redisUrl: string | null;
  workerId?: string;
  numBlocks?: number;
  /** Device-tier KV budget when numBlocks is not given (the engine's default otherwise). */
  kvCacheBytes?: number;
  /** How the KV cache stores rows (`--kv-cache-dtype`); default 'auto': the weights' 16-bit type. */
  kvDtype?: KvDtype | 'auto';
  blockSize?: number;
  /** 'kcache': V in the host tier, top-N attention at decode (see docs/KCACHE.md). */
  attention?: AttentionMode;
  kcache?: Partial<KCacheSettings>;
  threads?: number;
  /**
   * Prompts to prefill once the worker is registered (and before it reports ready), one token
   * each, so the first requests that start with them hit its cache (the shared cache: requests
   * of a router with API keys are salted per tenant and warm with `kcache warm` instead).
   */
  warmPrompts?: string[];
  /** Model loading progress: bytes of weights read so far and in all. */
  onLoadProgress?: (loadedBytes: number, totalBytes: number) => void;
  maxNumSeqs?: number;
  maxBatchedTokens?: number;
  /** Most prefill tokens of background requests (priority > 0) in one step while interactive traffic is around (default: maxBatchedTokens / 32). */
  maxBackgroundPrefillTokens?: number;
  maxWaiting?: number;
  /** HTTP port for /metrics; 0 picks a free one, null disables. */
  metricsPort?: number | null;
  /** Interface of the metrics endpoint (default: host); e.g. an internal address while gRPC faces clients. */
  metricsHost?: string;
  leaseTtlMs?: number;
  /** How long to keep trying to reach Redis at start before giving up (default 30 s). */
  redisWaitMs?: number;
  /** Mutual TLS: serve only callers with a certificate of the cluster CA (the routers). */
  tls?: ClusterTls | null;
  /** The model's name in the API, the metrics and block hashes (default: its reference, e.g. a path). */
  servedModelName?: string;
  /** Host-RAM offload tier below the KV pool, in bytes (`--offload-bytes`; 0: none): the engine's host tier. */
  offloadBytes?: number;
  /** Disk offload tier below the RAM one (`--offload-dir`, `--offload-disk-bytes`). */
  offloadDir?: string | null;
  offloadDiskBytes?: number;
  /** Pull a prefix a peer holds instead of computing it, when the router names one (`--peer-fetch`, default on). */
  peerFetch?: boolean;
  /** Longest a peer fetch may take (default 2 s); what arrived by then is used, the rest computed. */
  peerFetchTimeoutMs?: number;
}

/** The worker could not start (Redis unreachable): one line for the operator. */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';
}

export interface RunningWorker {
  workerId: string;
  address: string;
  port: number;
  metricsPort: number | null;
  engine: Engine;
  blocks: BlockManager;
  /** The offload tiers below the pool (null without --offload-bytes / --offload-dir). */
  offload: OffloadTiers | null;
  metrics: WorkerMetrics;
  /** Stops taking requests (health NOT_SERVING), lets in-flight ones finish within graceMs, then closes. */
  drain(graceMs: number): Promise<void>;
  close(): Promise<void>;
}

const STATUS: Record<WorkerError['code'], grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/** A request's fields; `d` (the model's generation_config.json) fills what the request leaves unset. */
function toInput(r: WorkerGenerateRequest__Output, d: GenerationDefaults = {}): GenerateInput {
  const s = r.sampling ?? {};
  const st = r.stop ?? {};
  return {
    requestId: r.requestId || randomUUID(),
    tokenIds: r.tokenIds ?? [],
    cacheSalt: r.cacheSalt ?? '',
    kcacheTopN: r.kcacheTopn ?? null,
    priority: r.priority ?? 0,
    resume: r.resumeGenerated ? { generated: r.resumeGenerated, textLen: r.resumeTextLen ?? 0 } : undefined,
    sampling: {
      temperature: s.temperature ?? d.temperature ?? 1,
      topK: s.topK ?? d.topK ?? 0,
      topP: s.topP ?? d.topP ?? 1,
      minP: s.minP ?? d.minP ?? 0,
      seed: s.seed ?? null,
      repetitionPenalty: s.repetitionPenalty ?? d.repetitionPenalty ?? 1,
      presencePenalty: s.presencePenalty ?? 0,
      frequencyPenalty: s.frequencyPenalty ?? 0,
      logprobs: s.logprobs ?? 0,
    },
    stop: {
      maxTokens: st.maxTokens ?? null,
      minTokens: st.minTokens ?? 0,
      stopTokenIds: st.stopTokenIds ?? [],
      stop: st.stop ?? [],
      ignoreEos: st.ignoreEos ?? false,
    },
  };
}

/** The KV tiers a worker fills: the device tier always, the host tier with KCache (same blocks, V half). */
export function kvTiers(info: {
  kvDeviceBytesPerBlock: number;
  kvHostBytesPerBlock: number;
}): { tier: 'device' | 'host'; bytesPerBlock: number }[] {
  const tiers: { tier: 'device' | 'host'; bytesPerBlock: number }[] = [{ tier: 'device', bytesPerBlock: info.kvDeviceBytesPerBlock }];
  if (info.kvHostBytesPerBlock > 0) tiers.push({ tier: 'host', bytesPerBlock: info.kvHostBytesPerBlock });
  return tiers;
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const spec = typeof o.model === 'string' ? resolveModel(o.model) : o.model;
  const engine = await Engine.load(spec, {
    numBlocks: o.numBlocks,
    kvCacheBytes: o.kvCacheBytes,
    kvDtype: o.kvDtype ?? 'auto',
    hostTierBytes: o.offloadBytes ?? 0,
    blockSize: o.blockSize,
    threads: o.threads,
    attention: o.attention,
    kcache: o.kcache,
    onProgress: o.onLoadProgress,
  });
  const info = engine.info();
  const workerId = o.workerId ?? `worker-${randomUUID().slice(0, 8)}`;
  const modelName = o.servedModelName ?? spec.id;
  const metrics = new WorkerMetrics(workerId, modelName);

  const redis: RedisClient | null = o.redisUrl ? connectRedis(o.redisUrl, { lazyConnect: true, maxRetriesPerRequest: null }) : null;
  // Redis being away must not take the worker down: events queue until it is back.
  // Before the worker registered, errors are summed up in the one line a failed start prints.
  let redisError = '';
  let registered = false;
  redis?.on('error', (e: Error) => {
    if (registered && e.message !== redisError) process.emitWarning(`redis: ${e.message}`);
    redisError = e.message;
  });
  let publisher: KvEventPublisher | null = null;
  const onEvent = (e: KvEvent) => publisher?.publish(e);
  // A block's tier is where its values live: with KCache, V of (most) layers is in host memory.
  const blocks = new BlockManager(info.numBlocks, info.blockSize, onEvent, info.attention === 'kcache' ? 'host' : 'device');
  const maxNumSeqs = o.maxNumSeqs ?? 64;
  const maxWaiting = o.maxWaiting ?? 1024;
  // offload tiers below the pool; a block's bytes are compatible only with this layout
  const tiers = new OffloadTiers({
    engine,
    ramSlots: info.hostTierSlots,
    diskDir: o.offloadDir ?? null,
    diskBytes: o.offloadDiskBytes ?? 0,
    blockBytes: info.kvBytesPerBlock,
    layout: `${modelName}|${info.kvDtype}|${info.blockSize}|${info.kvBytesPerBlock}`,
    workerId,
    onEvent,
    observer: metrics.tierObserver(),
  });
  const offload = tiers.enabled ? new EngineOffload(tiers, info.blockSize, metrics.offloadObserver()) : null;
  if (offload) {
    blocks.onEvict = offload.onEvict;
    metrics.observeOffload(() => tiers.stats());
  }
  const scheduler = new Scheduler(
    blocks,
    {
      maxNumSeqs,
      maxBatchedTokens: o.maxBatchedTokens ?? 512,
      maxBackgroundPrefillTokens: o.maxBackgroundPrefillTokens,
    },
    offload,
  );
  const peers =
    (o.peerFetch ?? true)
      ? new PeerFetcher({
          layout: { modelId: modelName, blockSize: info.blockSize, kvDtype: info.kvDtype, bytesPerBlock: info.kvBytesPerBlock },
          workerId,
          tls: o.tls ?? null,
          timeoutMs: o.peerFetchTimeoutMs,
          heldHere: (hashes) => {
            const pooled = blocks.lookup(hashes).length;
            return pooled + (offload ? tiers.lookup(hashes.slice(pooled)) : 0);
          },
          install: (got, prefix) => loop.between(() => installBlocks(blocks, engine, got, prefix)),
          prefillSecondsPerToken: () => loop.prefillSecondsPerToken(),
          observer: metrics.peerFetchObserver(),
        })
      : null;
  /** The prompt's cacheable hashes past its pool prefix, if the disk tier holds one of those the tiers continue it with. */
  const diskPrefix = (input: GenerateInput): string[] => {
    const hashes = promptBlockHashes(input.tokenIds, info.blockSize, { modelId: modelName, cacheSalt: input.cacheSalt });
    const rest = hashes.slice(blocks.lookup(hashes).length);
    const below = rest.slice(0, tiers.lookup(rest));
    return below.some((h) => tiers.tierOf(h) === 'offload_disk') ? below : [];
  };
  /** Every block held, tier by tier: the pool's, then the offload tiers'. */
  const holdings = () => [{ tier: blocks.tier, blocks: blocks.snapshot() }, ...(offload ? tiers.snapshot() : [])];
  const loop = new EngineLoop(engine, blocks, scheduler, metrics, {
    tiers: kvTiers(info).map((t) => t.tier),
    // with a fractional N the per-request cap is the context; with an absolute one, that N
    kcacheTopN: info.kcache ? (info.kcache.topNFraction > 0 ? info.maxSeqLen : info.kcache.topN) : null,
    maxWaiting,
    modelName,
    overlapOutput: info.threads < availableParallelism(),
  });
  metrics.observe(
    () => loop.load(),
    kvTiers(info).map((t) => t.tier),
  );
  let draining = false;

  const { definition, v1 } = protos();
  const server = new grpc.Server();
  // NOT_SERVING until registered in Redis: routers could not find it, so neither should probes
  const initial = redis ? 'NOT_SERVING' : 'SERVING';
  const health = new HealthImplementation({ '': initial, [WORKER_SERVICE]: initial });
  health.addToServer(server);
  new ReflectionService(definition, { services: [WORKER_SERVICE] }).addToServer(server);
  const handlers: WorkerHandlers = {
    Generate(call) {
      const input = toInput(call.request, spec.generationDefaults);
      const origin = call.metadata.get(ROUTER_METADATA)[0];
      if (typeof origin === 'string') input.origin = origin;
      let ended = false;
      let submitted = false;
      call.on('cancelled', () => {
        ended = true;
        if (submitted) loop.abort(input.requestId);
      });
      const submit = () => {
        if (ended) return; // the caller left while its blocks were fetched
        try {
          if (draining) throw new WorkerError('UNAVAILABLE', 'the worker is draining');
          loop.submit(input, {
            chunk: (c) => {
              if (!ended) call.write({ chunk: c });
            },
            final: (f) => {
              if (ended) return;
              ended = true;
              call.write({ final: { finishReason: f.finishReason, usage: f.usage, workerId, text: f.text } });
              call.end();
            },
          });
          submitted = true;
        } catch (e) {
          ended = true;
          if (e instanceof WorkerError) call.emit('error', { code: STATUS[e.code], details: e.message });
          else call.emit('error', { code: grpc.status.INTERNAL, details: (e as Error).message });
        }
      };
      // Before it is queued, this request's blocks below the pool are brought up: disk blocks read
      // into RAM, then what a peer holds pulled over. Only this request waits for them (the loop
      // keeps stepping); a failure leaves them to be computed.
      const r = call.request;
      const hint =
        r.peerAddress && r.peerWorkerId && r.peerBlocks ? { address: r.peerAddress, workerId: r.peerWorkerId, blocks: r.peerBlocks } : null;
      const fetchFromPeer = peers !== null && hint !== null && hint.workerId !== workerId && !draining;
      const promote = offload && tiers.stats().offload_disk.blocks > 0 ? diskPrefix(input) : [];
      if (promote.length > 0 || fetchFromPeer) {
        (async () => {
          if (promote.length > 0) await tiers.promote(promote);
          if (peers && hint && fetchFromPeer) await peers.prefetch(input.tokenIds, input.cacheSalt, hint);
        })()
          .catch(() => {})
          .then(submit);
      } else {
        submit();
      }
    },
    Abort(call, cb) {
      cb(null, { found: loop.abort(call.request.requestId ?? '') });
    },
    Snapshot(_call, cb) {
      if (!publisher) {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: 'this worker publishes no KV events (no --redis-url)' });
        return;
      }
      cb(null, {
        epoch: publisher.epoch,
        seq: publisher.lastSeq,
        tiers: holdings().map((t) => ({ tier: t.tier, hashes: t.blocks.map((b) => b.hash) })),
      });
    },
    FetchBlocks(call) {
      const r = call.request;
      const fail = (code: grpc.status, details: string) => call.emit('error', { code, details });
      const layout = { modelId: modelName, blockSize: info.blockSize, kvDtype: info.kvDtype, bytesPerBlock: info.kvBytesPerBlock };
      if (
        r.modelId !== layout.modelId ||
        r.blockSize !== layout.blockSize ||
        r.kvDtype !== layout.kvDtype ||
        Number(r.bytesPerBlock) !== layout.bytesPerBlock
      ) {
        fail(
          grpc.status.FAILED_PRECONDITION,
          `fetch_blocks: this worker holds ${layout.modelId} blocks of ${layout.blockSize} tokens in ${layout.kvDtype} (${layout.bytesPerBlock} bytes), not ${r.modelId} / ${r.blockSize} / ${r.kvDtype} (${r.bytesPerBlock} bytes)`,
        );
        return;
      }
      const hashes = r.hashes ?? [];
      if (hashes.length > MAX_FETCH_BLOCKS) {
        fail(grpc.status.INVALID_ARGUMENT, `hashes: ${hashes.length} blocks asked, at most ${MAX_FETCH_BLOCKS} per call`);
        return;
      }
      // copied between steps (a step may overwrite an idle pool block later), then streamed
      loop
        .between(() => {
          const out: { hash: string; data: Uint8Array }[] = [];
          for (const h of hashes) {
            const [b] = blocks.lookup([h]);
            const data = b !== undefined ? engine.readBlocks([b]) : offload ? tiers.peek(h) : null;
            if (!data) break;
            out.push({ hash: h, data });
          }
          return out;
        })
        .then(
          (out) => {
            metrics.peerServedBlocks.inc(out.length);
            for (const { hash, data } of out)
              call.write({ hash, data: Buffer.from(data.buffer, data.byteOffset, data.length), crc32: crc32(data) });
            call.end();
          },
          (e: Error) => fail(e instanceof WorkerError ? STATUS[e.code] : grpc.status.INTERNAL, e.message),
        );
    },
    Info(_call, cb) {
      cb(null, {
        workerId,
        modelId: modelName,
        blockSize: info.blockSize,
        tiers: [
          ...kvTiers(info).map((t) => ({ tier: t.tier, numBlocks: info.numBlocks, bytesPerBlock: t.bytesPerBlock })),
          ...Object.entries(offload ? tiers.stats() : {})
            .filter(([, st]) => st.capacityBlocks > 0)
            .map(([tier, st]) => ({ tier, numBlocks: st.capacityBlocks, bytesPerBlock: info.kvBytesPerBlock })),
        ],
        attentionMode: info.attention,
        kcacheTopn: info.kcache?.topN ?? 0,
        kcacheFullLayers: info.kcache?.fullLayers ?? 0,
        backend: info.backend,
        vocabSize: info.vocabSize,
        maxModelLen: info.maxSeqLen,
      });
    },
  };
  server.addService(v1.Worker.service, handlers);
  const host = o.host ?? '127.0.0.1';
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:${o.port}`, workerServerCredentials(o.tls ?? null), (err, p) => (err ? rej(err) : res(p))),
  );
  const address = `${o.advertiseHost ?? host}:${port}`;

  const metricsServer =
    o.metricsPort !== null && o.metricsPort !== undefined
      ? await serveMetrics(metrics.registry, o.metricsHost ?? host, o.metricsPort)
      : null;
  const metricsPort = metricsServer?.port ?? null;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(WORKER_SERVICE, 'NOT_SERVING');
    await loop.stop();
    await new Promise<void>((r) => server.tryShutdown(() => r()));
    // Redis may be gone (its commands would wait for it forever): the lease's expiry removes what
    // this could not
    await Promise.race([publisher?.stop(), new Promise((r) => setTimeout(r, REDIS_SHUTDOWN_MS).unref())]);
    redis?.disconnect();
    await metricsServer?.close();
    peers?.close();
    engine.dispose();
    tiers.close();
  };
  if (redis) {
    try {
      // ioredis reconnects with backoff by itself; a PING waits in its queue until one succeeds
      redis.connect().catch(() => {});
      const waitMs = o.redisWaitMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        redis.ping().catch((e: Error) => {
          // reachable but refusing (NOAUTH, WRONGPASS, NOPERM): waiting will not help
          throw e.name === 'ReplyError' ? new WorkerStartError(`redis: ${redactRedisUrl(o.redisUrl ?? '')}: ${e.message}`) : e;
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new WorkerStartError(
                  `redis: ${redactRedisUrl(o.redisUrl ?? '')} was not reachable within ${waitMs} ms${redisError ? ` (${redisError})` : ''}`,
                ),
              ),
            waitMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      publisher = new KvEventPublisher(
        redis,
        {
          workerId,
          address,
          modelId: modelName,
          modelRef: spec.id,
          blockSize: info.blockSize,
          maxModelLen: info.maxSeqLen,
          maxRequests: maxNumSeqs + maxWaiting,
        },
        () => loop.load(),
        {
          leaseTtlMs: o.leaseTtlMs,
        },
      );
      await publisher.start(holdings());
      registered = true;
      health.setStatus('', 'SERVING');
      health.setStatus(WORKER_SERVICE, 'SERVING');
    } catch (e) {
      publisher = null; // it never held the lease: nothing of it to remove
      await close();
      throw e;
    }
  }
  if (o.warmPrompts?.length) {
    const tok = spec.tokenizer;
    if (!tok) {
      await close();
      throw new WorkerStartError(`--warm-prompts: model ${spec.id} has no tokenizer`);
    }
    for (const text of o.warmPrompts) {
      const input = toInput({
        requestId: `warm-${randomUUID()}`,
        tokenIds: tok.encode(text, { addBos: true }),
        stop: { maxTokens: 1, ignoreEos: true },
      } as WorkerGenerateRequest__Output);
      await new Promise<void>((resolve, reject) => {
        try {
          loop.submit(input, { chunk: () => {}, final: () => resolve() });
        } catch (e) {
          reject(new WorkerStartError(`--warm-prompts: ${(e as Error).message}`));
        }
      });
    }
  }
  const drain = async (graceMs: number) => {
    draining = true;
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(WORKER_SERVICE, 'NOT_SERVING');
    await Promise.race([loop.idle(), new Promise((r) => setTimeout(r, graceMs).unref())]);
    await close();
  };
  return { workerId, address, port, metricsPort, engine, blocks, offload: offload ? tiers : null, metrics, drain, close };
}
