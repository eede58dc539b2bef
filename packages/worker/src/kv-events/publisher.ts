/**
 * Publishes a worker's KV events to its Redis Stream `kcache:kv:{workerId}` and keeps its lease
 * key `kcache:worker:{workerId}` alive (SET PX, refreshed at a third of the TTL).
 *
 * Each entry: seq (monotonic per epoch, from 1), epoch (this process's start), type
 * (stored | removed | cleared), hashes (comma-separated), parent, tier. On start the worker
 * announces itself: `cleared`, then `stored` for every block it holds. Entries are sent in order
 * on one connection; while Redis is away ioredis queues them, so a consumer sees no gap once it
 * returns (or a new epoch, after which it resyncs).
 */
import type { Redis } from 'ioredis';
import type { BlockManager, KvEvent } from '../scheduler/block-manager.js';

export const kvStreamKey = (workerId: string) => `kcache:kv:${workerId}`;
export const leaseKey = (workerId: string) => `kcache:worker:${workerId}`;
/** The set of worker ids routers look up leases for (no SCAN over the keyspace). */
export const WORKERS_SET = 'kcache:workers';

export interface LeaseInfo {
  workerId: string;
  address: string;
  modelId: string;
  blockSize: number;
  epoch: number;
}

export class KvEventPublisher {
  private seq = 0;
  readonly epoch = Date.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly lease: Omit<LeaseInfo, 'epoch'>,
    private readonly leaseTtlMs = 10_000,
    private readonly maxLen = 100_000,
  ) {}

  /** The sequence number of the last event published. */
  get lastSeq(): number {
    return this.seq;
  }

  publish(e: KvEvent): void {
    this.seq += 1;
    const fields: string[] = ['seq', String(this.seq), 'epoch', String(this.epoch), 'type', e.type];
    if (e.type !== 'cleared') fields.push('hashes', e.hashes.join(','), 'tier', e.tier);
    if (e.type === 'stored') fields.push('parent', e.parent ?? '');
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
    this.timer = setInterval(() => void this.renew().catch(() => {}), Math.max(100, this.leaseTtlMs / 3));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const info: LeaseInfo = { ...this.lease, epoch: this.epoch };
    await this.redis
      .multi()
      .set(leaseKey(this.lease.workerId), JSON.stringify(info), 'PX', this.leaseTtlMs)
      .sadd(WORKERS_SET, this.lease.workerId)
      .exec();
  }

  /** Stops renewing and deletes the lease (a clean shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.redis
      .multi()
      .del(leaseKey(this.lease.workerId))
      .srem(WORKERS_SET, this.lease.workerId)
      .exec()
      .catch(() => {});
  }
}
