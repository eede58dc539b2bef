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
 * requests other routers sent. The lease names this process (`instance`): a lease held by another
 * live process with the same worker id is never overwritten, so a second worker started with an
 * id in use is refused at start instead of corrupting the index.
 */

import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@kcache/block-index';
import {
  encodeKvEvent,
  encodeLease,
  type KvEvent,
  kvStreamKey,
  leaseKey,
  parseLease,
  type Tier,
  WORKERS_SET,
  type WorkerLease,
  type WorkerLoad,
} from '@kcache/protocol';

/** KEYS[1]=lease; ARGV = lease JSON, instance, ttlMs. Writes unless another instance holds it; returns that lease then. */
const CLAIM_LEASE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, l = pcall(cjson.decode, cur)
  if ok and type(l) == 'table' and l.instance and l.instance ~= '' and l.instance ~= ARGV[2] then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
`;

type LeaseRedis = RedisClient & { kcClaimLease(key: string, lease: string, instance: string, ttlMs: string): Promise<string | null> };

export class WorkerIdInUseError extends Error {
  override readonly name = 'WorkerIdInUseError';
}

export interface PublisherOptions {
  leaseTtlMs?: number;
  /** How often the lease (with the load) is rewritten; at most a third of the TTL. */
  loadIntervalMs?: number;
  maxLen?: number;
}

export class KvEventPublisher {
  private seq = 0;
  readonly epoch = Date.now();
  readonly instance = randomUUID();
  private readonly redis: LeaseRedis;
  private conflictWarned = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly leaseTtlMs: number;
  private readonly intervalMs: number;
  private readonly maxLen: number;

  constructor(
    redis: RedisClient,
    private readonly lease: Omit<WorkerLease, 'epoch' | 'instance' | 'writtenAt' | 'ttlMs' | 'load'>,
    private readonly load: () => WorkerLoad,
    o: PublisherOptions = {},
  ) {
    if (!('kcClaimLease' in redis)) redis.defineCommand('kcClaimLease', { numberOfKeys: 1, lua: CLAIM_LEASE });
    this.redis = redis as LeaseRedis;
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

  /**
   * Claims the worker id, announces the worker and keeps the lease. If another process's lease
   * holds the id, waits while that lease stays as it is: a dead process's lease expires (the id is
   * then claimed: a worker restarted after a crash), a live one renews it (WorkerIdInUseError).
   */
  async start(holdings: readonly { tier: Tier; blocks: readonly { hash: string; parent: string | null }[] }[]): Promise<void> {
    let other = await this.renew();
    let seen = other;
    while (other) {
      const held = parseLease(other);
      await new Promise((r) => setTimeout(r, 100));
      other = await this.renew();
      if (other && other !== seen && parseLease(other)?.writtenAt !== held?.writtenAt) {
        throw new WorkerIdInUseError(
          `worker id ${this.lease.workerId} is in use by another worker${held ? ` at ${held.address}` : ''} that is alive (it renews its lease)`,
        );
      }
      seen = other;
    }
    this.publish({ type: 'cleared' });
    for (const { tier, blocks } of holdings)
      for (const { hash, parent } of blocks) this.publish({ type: 'stored', hashes: [hash], parent, tier });
    this.timer = setInterval(() => void this.renew().catch(() => {}), this.intervalMs);
    this.timer.unref();
  }

  /** Writes the lease; returns the lease of another process holding this worker id instead, if one does. */
  private async renew(): Promise<string | null> {
    const lease: WorkerLease = {
      ...this.lease,
      epoch: this.epoch,
      instance: this.instance,
      writtenAt: Date.now(),
      ttlMs: this.leaseTtlMs,
      load: this.load(),
    };
    const other = await this.redis.kcClaimLease(leaseKey(this.lease.workerId), encodeLease(lease), this.instance, String(this.leaseTtlMs));
    if (other) {
      if (this.timer && !this.conflictWarned) process.emitWarning(`worker id ${this.lease.workerId}: another process holds its lease`);
      this.conflictWarned = true;
      return other;
    }
    // a separate command, not MULTI: the set and the lease are in different Redis Cluster slots
    await this.redis.sadd(WORKERS_SET, this.lease.workerId);
    return null;
  }

  /** Stops renewing and deletes the lease (a clean shutdown). */
  async stop(): Promise<void> {
    const started = this.timer !== null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!started || this.conflictWarned) return; // the lease is not ours to delete
    await Promise.all([this.redis.del(leaseKey(this.lease.workerId)), this.redis.srem(WORKERS_SET, this.lease.workerId)]).catch(() => {});
  }
}
