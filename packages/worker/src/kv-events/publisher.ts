/**
 * Publishes a worker's KV events to its Redis stream and keeps its lease alive, with the key
 * names and encodings of @kcache/protocol (the one definition routers read them with).
 *
 * Events: seq is monotonic per epoch (this process's start), from 1. On start the worker announces
 * itself: `cleared`, then `stored` for every block it holds. Entries are sent in order on one
 * connection; while Redis is away ioredis queues them, so a consumer sees no gap once it returns
 * (or a new epoch, after which it resyncs).
 *
 * Lease: SET PX leaseTtlMs, rewritten every loadIntervalMs with the worker's current load
 * (running, waiting, KV and cache usage), so every router weighs the same load, including the
 * requests other routers sent.
 */

import type { RedisClient } from '@kcache/block-index';
import {
  encodeKvEvent,
  encodeLease,
  type KvEvent,
  kvStreamKey,
  leaseKey,
  WORKERS_SET,
  type WorkerLease,
  type WorkerLoad,
} from '@kcache/protocol';
import type { BlockManager } from '../scheduler/block-manager.js';

export interface PublisherOptions {
  leaseTtlMs?: number;
  /** How often the lease (with the load) is rewritten; at most a third of the TTL. */
  loadIntervalMs?: number;
  maxLen?: number;
}

export class KvEventPublisher {
  private seq = 0;
  readonly epoch = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private readonly leaseTtlMs: number;
  private readonly intervalMs: number;
  private readonly maxLen: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly lease: Omit<WorkerLease, 'epoch' | 'writtenAt' | 'load'>,
    private readonly load: () => WorkerLoad,
    o: PublisherOptions = {},
  ) {
    this.leaseTtlMs = o.leaseTtlMs ?? 10_000;
    this.intervalMs = Math.max(50, Math.min(o.loadIntervalMs ?? 500, this.leaseTtlMs / 3));
    this.maxLen = o.maxLen ?? 100_000;
  }

  /** The sequence number of the last event published. */
  get lastSeq(): number {
    return this.seq;
  }

  publish(event: KvEvent): void {
    this.seq += 1;
    const fields = encodeKvEvent({ seq: this.seq, epoch: this.epoch, event });
    this.redis.xadd(kvStreamKey(this.lease.workerId), 'MAXLEN', '~', String(this.maxLen), '*', ...fields).catch(() => {
      // ioredis retries while connecting; a command that still fails is lost, and the consumer
      // sees the gap in seq and resyncs from the worker.
    });
  }

  /** Announces the worker (clear + current contents) and starts the lease. */
  async start(bm: BlockManager): Promise<void> {
    this.publish({ type: 'cleared' });
    for (const { hash, parent } of bm.snapshot()) this.publish({ type: 'stored', hashes: [hash], parent, tier: bm.tier });
    await this.renew();
    this.timer = setInterval(() => void this.renew().catch(() => {}), this.intervalMs);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const lease: WorkerLease = { ...this.lease, epoch: this.epoch, writtenAt: Date.now(), load: this.load() };
    // two commands, not MULTI: the set and the lease are in different Redis Cluster slots
    await this.redis.set(leaseKey(this.lease.workerId), encodeLease(lease), 'PX', this.leaseTtlMs);
    await this.redis.sadd(WORKERS_SET, this.lease.workerId);
  }

  /** Stops renewing and deletes the lease (a clean shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all([this.redis.del(leaseKey(this.lease.workerId)), this.redis.srem(WORKERS_SET, this.lease.workerId)]).catch(() => {});
  }
}
