/**
 * The workers this router knows: their leases (from Redis), a gRPC client each, the requests this
 * router has in flight on each, and a circuit breaker each. sync() follows the leases: new workers
 * get a client, a restarted one (new epoch or address) gets a new client but keeps its breaker and
 * in-flight count, and one whose lease is missing is forgotten at once, unless Redis restarted
 * since the lease was last seen: a Redis that restarted empty is no proof that the workers died
 * (they re-register within a renewal period), so then it stays until its lease could really have
 * expired (its TTL after this router last saw it).
 */
import * as grpc from '@grpc/grpc-js';
import { protos, type WorkerClient, type WorkerLease } from '@kcache/protocol';
import { CircuitBreaker } from './breaker.js';
import type { Candidate } from './route.js';

export interface PooledWorker {
  lease: WorkerLease;
  client: WorkerClient;
  /** Requests this router has in flight on the worker. */
  inFlight: number;
  /** Prompt blocks this router sent there that the worker did not hold, since its last load report. */
  routedBlocks: number;
  /** When this router last read the worker's lease (its clock, ms). */
  seenAt: number;
  breaker: CircuitBreaker;
}

export interface PoolEvents {
  /** A worker left (lease expired or removed): forget what was routed there. */
  removed?(workerId: string): void;
}

export class WorkerPool {
  private readonly workers = new Map<string, PooledWorker>();
  private redis = '';
  private redisRestartedAt = Number.NEGATIVE_INFINITY;

  constructor(
    /** This router's id: its own requests in a worker's load report are counted from inFlight instead. */
    private readonly routerId: string,
    private readonly breakerThreshold?: number,
    private readonly breakerOpenMs?: number,
    private readonly events: PoolEvents = {},
    private readonly now: () => number = Date.now,
  ) {}

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
      this.workers.set(lease.workerId, {
        lease,
        client: new (protos().v1.Worker)(lease.address, grpc.credentials.createInsecure()),
        inFlight: cur?.inFlight ?? 0,
        routedBlocks: 0,
        seenAt: now,
        breaker: cur?.breaker ?? new CircuitBreaker(this.breakerThreshold, this.breakerOpenMs),
      });
    }
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

  models(): Set<string> {
    return new Set(this.all().map((w) => w.lease.modelId));
  }

  /**
   * The workers of a model that may take a request now (breaker not open), as the routing core
   * sees them. Load is this router's own in-flight count (exact, current) plus what the worker's
   * last report says the other routers and direct clients have there (up to one lease period old).
   * Cached blocks: the last report plus the new blocks this router has sent there since.
   */
  candidates(modelId: string): Candidate[] {
    return this.all()
      .filter((w) => w.lease.modelId === modelId && w.breaker.state !== 'open')
      .map((w) => ({
        id: w.lease.workerId,
        load: w.inFlight + Math.max(0, w.lease.load.running + w.lease.load.waiting - (w.lease.load.byRouter[this.routerId] ?? 0)),
        cachedBlocks: Math.min(w.lease.load.numBlocks, w.lease.load.cachedBlocks + w.routedBlocks),
        numBlocks: w.lease.load.numBlocks,
      }));
  }

  close(): void {
    for (const w of this.workers.values()) w.client.close();
    this.workers.clear();
  }
}
