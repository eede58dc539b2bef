/**
 * The workers this router knows: their leases (from Redis), a gRPC client each, the requests this
 * router has in flight on each, and a circuit breaker each. sync() follows the leases: new workers
 * get a client, a restarted one (new epoch or address) gets a new client but keeps its breaker and
 * in-flight count, and one whose lease is missing is forgotten at once, unless Redis restarted
 * since the lease was last seen: a Redis that restarted empty is no proof that the workers died
 * (they re-register within a renewal period), so then it stays until its lease could really have
 * expired (its TTL after this router last saw it).
 *
 * Liveness: each connection to a worker carries gRPC keepalive (a ping every keepaliveMs, dropped
 * when one goes unanswered for keepaliveMs), with or without calls on it. A worker that freezes
 * (SIGSTOP, a hung host, a partition) loses its connection within 2 × keepaliveMs: its streams fail
 * and migrate, and it takes no new request until its connection is ready again, which needs the
 * worker to answer an HTTP/2 handshake.
 */
import * as grpc from '@grpc/grpc-js';
import { type ClusterTls, protos, type WorkerClient, type WorkerLease, workerChannelCredentials } from '@kcache/protocol';
import { CircuitBreaker } from './breaker.js';
import type { Candidate } from './route.js';

export interface PooledWorker {
  lease: WorkerLease;
  client: WorkerClient;
  /** Requests this router has in flight on the worker. */
  inFlight: number;
  /** Of those, background work (priority > 0). */
  inFlightBackground: number;
  /** Prompt blocks this router sent there that the worker did not hold, since its last load report. */
  routedBlocks: number;
  /** When this router last read the worker's lease (its clock, ms). */
  seenAt: number;
  breaker: CircuitBreaker;
  /** False from the moment its ready connection dropped until it is ready again. */
  reachable: boolean;
}

export interface PoolOptions {
  breakerThreshold?: number;
  breakerOpenMs?: number;
  /** Keepalive ping interval and timeout on each worker connection (ms; default 1000, 0: no keepalive). */
  keepaliveMs?: number;
  /** Mutual TLS to workers: each connection checks that the worker's certificate names its lease's worker id. */
  tls?: ClusterTls | null;
  events?: PoolEvents;
  now?: () => number;
}

export interface PoolEvents {
  /** A worker left (lease expired or removed): forget what was routed there. */
  removed?(workerId: string): void;
  /** A worker's ready connection dropped (it died, froze, or went away). */
  unreachable?(workerId: string): void;
}

/**
 * What one background request (priority > 0: batch jobs) on a worker weighs in the load an
 * interactive request (priority 0) sees there. The worker's scheduler serves the interactive one
 * first (its prefill step carries only the background decodes), so a worker busy with a batch is
 * almost as good a place for it as an idle one: what the background work still costs it is the
 * step in flight when it arrives and a decode row per background sequence in its own steps, about
 * a tenth of what an interactive request ahead of it costs (a whole prefill, and its decodes).
 * Counted in full, a running batch pushes every interactive request onto the workers without
 * one, where they queue behind each other (docs/BENCHMARKS.md, issue #16). Background requests
 * see every request at full weight.
 */
export const BACKGROUND_LOAD_WEIGHT = 0.1;

/** Longest idle time grpc-js accepts: the channel never idles a worker connection on its own (keepalive watches it). */
const NEVER_IDLE_MS = 2 ** 31 - 1;

export class WorkerPool {
  private readonly workers = new Map<string, PooledWorker>();
  private redis = '';
  private redisRestartedAt = Number.NEGATIVE_INFINITY;
  private readonly events: PoolEvents;
  private readonly now: () => number;
  private readonly channelOptions: grpc.ChannelOptions;

  constructor(
    /** This router's id: its own requests in a worker's load report are counted from inFlight instead. */
    private readonly routerId: string,
    private readonly o: PoolOptions = {},
  ) {
    this.events = o.events ?? {};
    this.now = o.now ?? Date.now;
    const keepaliveMs = o.keepaliveMs ?? 1000;
    this.channelOptions = {
      'grpc.client_idle_timeout_ms': NEVER_IDLE_MS,
      ...(keepaliveMs > 0
        ? { 'grpc.keepalive_time_ms': keepaliveMs, 'grpc.keepalive_timeout_ms': keepaliveMs, 'grpc.keepalive_permit_without_calls': 1 }
        : {}),
    };
  }

  /** `redisInstance`: which Redis the leases came from (redisInstance()); a change is a restart. */
  sync(leases: readonly WorkerLease[], redisInstance = ''): void {
    const live = new Set(leases.map((l) => l.workerId));
    const now = this.now();
    if (redisInstance !== this.redis) {
      if (this.redis !== '') this.redisRestartedAt = now;
      this.redis = redisInstance;
    }
    for (const [id, w] of this.workers) {
      if (live.has(id)) continue;
      if (this.redisRestartedAt >= w.seenAt && now - w.seenAt < w.lease.ttlMs) continue;
      w.client.close();
      this.workers.delete(id);
      this.events.removed?.(id);
    }
    for (const lease of leases) {
      const cur = this.workers.get(lease.workerId);
      if (cur && cur.lease.address === lease.address && cur.lease.epoch === lease.epoch) {
        if (lease.writtenAt !== cur.lease.writtenAt) cur.routedBlocks = 0; // the new report counts them
        cur.lease = lease;
        cur.seenAt = now;
        continue;
      }
      cur?.client.close();
      const w: PooledWorker = {
        lease,
        client: new (protos().v1.Worker)(lease.address, workerChannelCredentials(this.o.tls ?? null, lease.workerId), this.channelOptions),
        inFlight: cur?.inFlight ?? 0,
        inFlightBackground: cur?.inFlightBackground ?? 0,
        routedBlocks: 0,
        seenAt: now,
        breaker: cur?.breaker ?? new CircuitBreaker(this.o.breakerThreshold, this.o.breakerOpenMs),
        reachable: true,
      };
      this.workers.set(lease.workerId, w);
      this.watch(w);
    }
  }

  /**
   * Connects to the worker now (the first request finds the connection ready, and keepalive
   * watches it from the start) and follows the connection's state until the client is closed.
   */
  private watch(w: PooledWorker): void {
    const channel = w.client.getChannel();
    let state = channel.getConnectivityState(true);
    const next = () =>
      channel.watchConnectivityState(state, Number.POSITIVE_INFINITY, () => {
        const before = state;
        state = channel.getConnectivityState(false);
        if (state === grpc.connectivityState.SHUTDOWN) return; // closed by this pool
        if (state === grpc.connectivityState.READY) w.reachable = true;
        else if (before === grpc.connectivityState.READY) {
          // no breaker trip: the connection itself is the test. A new one is ready only once the
          // worker has answered the HTTP/2 handshake, which a frozen or dead worker never does,
          // while a drop this router caused itself (its own event loop stalled past the keepalive
          // timeout) heals in the milliseconds a reconnect takes.
          w.reachable = false;
          this.events.unreachable?.(w.lease.workerId);
        }
        if (state === grpc.connectivityState.IDLE) state = channel.getConnectivityState(true); // reconnect
        next();
      });
    next();
  }

  get(id: string): PooledWorker | undefined {
    return this.workers.get(id);
  }

  all(): PooledWorker[] {
    return [...this.workers.values()];
  }

  /** The shortest context among a model's workers (0: none reported). */
  maxModelLen(modelId: string): number {
    const lens = this.all().flatMap((w) => (w.lease.modelId === modelId && w.lease.maxModelLen > 0 ? [w.lease.maxModelLen] : []));
    return lens.length > 0 ? Math.min(...lens) : 0;
  }

  /** Where a served model was loaded from (its workers' lease `modelRef`): its tokenizer and chat template live there. */
  modelRef(modelId: string): string {
    return this.all().find((w) => w.lease.modelId === modelId)?.lease.modelRef ?? modelId;
  }

  models(): Set<string> {
    return new Set(this.all().map((w) => w.lease.modelId));
  }

  /**
   * The workers of a model that may take a request of `priority` now (breaker not open), as the
   * routing core sees them. Load is this router's own in-flight count (exact, current) plus what
   * the worker's last report says the other routers and direct clients have there (up to one lease
   * period old); for an interactive request (priority 0), background work counts at
   * BACKGROUND_LOAD_WEIGHT. Cached blocks: the last report plus the new blocks this router has sent
   * there since.
   */
  candidates(modelId: string, priority = 0): Candidate[] {
    return this.all()
      .filter((w) => w.lease.modelId === modelId && w.reachable && w.breaker.state !== 'open')
      .map((w) => ({
        id: w.lease.workerId,
        load: this.load(w, priority),
        cachedBlocks: Math.min(w.lease.load.numBlocks, w.lease.load.cachedBlocks + w.routedBlocks),
        numBlocks: w.lease.load.numBlocks,
      }));
  }

  /**
   * Whether a worker must refuse another request: this router alone has as many in flight there as
   * its lease's `maxRequests` (running plus queued). Only this router's own count is used: it is
   * exact, while the other routers' share comes from a report up to one renewal old, and a stale
   * report must not turn requests away from a worker that has room (the worker then answers itself).
   */
  atLimit(workerId: string): boolean {
    const w = this.workers.get(workerId);
    return !!w && w.lease.maxRequests > 0 && w.inFlight >= w.lease.maxRequests;
  }

  /**
   * Whether every worker that may take a request of this model is at its limit: a new request can
   * only be refused there, so the router refuses it itself, at once.
   */
  saturated(modelId: string): boolean {
    const c = this.candidates(modelId);
    return c.length > 0 && c.every((x) => this.atLimit(x.id));
  }

  /**
   * Routing load for a request of `priority`: this router's own in-flight requests there (exact,
   * current) plus the others' from the worker's last report, background work weighed for an
   * interactive request.
   */
  private load(w: PooledWorker, priority: number): number {
    const l = w.lease.load;
    const others = Math.max(0, l.running + l.waiting - (l.byRouter[this.routerId] ?? 0));
    if (priority > 0) return w.inFlight + others;
    const othersBackground = Math.min(others, Math.max(0, l.background - (l.backgroundByRouter[this.routerId] ?? 0)));
    const background = w.inFlightBackground + othersBackground;
    return w.inFlight + others - background + BACKGROUND_LOAD_WEIGHT * background;
  }

  close(): void {
    for (const w of this.workers.values()) w.client.close();
    this.workers.clear();
  }
}
