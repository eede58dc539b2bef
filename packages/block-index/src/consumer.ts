/**
 * Tails every live worker's KV-event stream into a block index. Any number of routers run one:
 * the index's per-worker cursor makes re-applied events no-ops, so consumers need no coordination.
 * A sequence gap (events trimmed or lost) triggers a resync from the worker's own snapshot (the
 * `resync` callback: the worker's Snapshot RPC). A worker whose lease has expired is purged: its
 * blocks and its stream leave Redis.
 */
import { decodeKvEvent, kvStreamKey, WORKERS_SET, type WorkerLease } from '@kcache/protocol';
import type { RedisClient } from './connect.js';
import { liveWorkers } from './leases.js';
import type { BlockIndex, WorkerSnapshot } from './types.js';

type XReadReply = [string, [string, string[]][]][] | null;

export class IndexConsumer {
  private readonly lastId = new Map<string, string>();
  private stopped = false;
  private loop: Promise<void> | null = null;
  /** Events applied, duplicates skipped, gaps found, workers purged (for metrics and tests). */
  readonly stats = { applied: 0, duplicates: 0, gaps: 0, malformed: 0, purged: 0 };

  constructor(
    private readonly index: BlockIndex,
    private readonly redis: RedisClient,
    /** A dedicated connection for single-Redis XREAD BLOCK (it holds the connection while it waits). */
    private readonly reader: RedisClient,
    private readonly resync: (lease: WorkerLease) => Promise<WorkerSnapshot>,
    private readonly blockMs = 50,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** One pass: purge dead workers, then read and apply what the live ones appended. */
  async poll(): Promise<void> {
    const live = await liveWorkers(this.redis);
    const liveIds = new Set(live.map((l) => l.workerId));
    for (const w of await this.index.indexedWorkers()) {
      if (liveIds.has(w)) continue;
      await this.index.removeWorker(w);
      await this.redis.srem(WORKERS_SET, w);
      this.lastId.delete(w);
      this.stats.purged++;
    }
    if (live.length === 0) {
      await sleep(this.blockMs);
      return;
    }
    for (const [key, entries] of await this.read(live)) {
      const lease = live.find((l) => kvStreamKey(l.workerId) === key) as WorkerLease;
      const worker = lease.workerId;
      for (const [id, flat] of entries) {
        const entry = decodeKvEvent(flat);
        this.lastId.set(worker, id);
        if (!entry) {
          this.stats.malformed++;
          continue;
        }
        const r = await this.index.apply(worker, entry);
        if (r === 'ok') this.stats.applied++;
        else if (r === 'dup') this.stats.duplicates++;
        else {
          this.stats.gaps++;
          await this.index.resync(worker, await this.resync(lease));
        }
      }
    }
  }

  /**
   * New entries of every live worker's stream. One blocking XREAD over all streams on a single
   * Redis; on a Redis Cluster the streams sit in different slots, so one non-blocking XREAD per
   * stream (in parallel) and a pause when none had anything.
   */
  private async read(live: readonly WorkerLease[]): Promise<XReadReply & {}> {
    const keys = live.map((l) => kvStreamKey(l.workerId));
    const ids = live.map((l) => this.lastId.get(l.workerId) ?? '0');
    if (!this.redis.isCluster) {
      const res = (await this.reader.xread('COUNT', 1000, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...ids)) as XReadReply;
      return res ?? [];
    }
    const parts = await Promise.all(
      keys.map((k, i) => this.redis.xread('COUNT', 1000, 'STREAMS', k, ids[i] as string) as Promise<XReadReply>),
    );
    const res = parts.flatMap((p) => p ?? []);
    if (res.length === 0) await sleep(this.blockMs);
    return res;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.poll();
      } catch {
        // Redis away or a worker unreachable for resync: try again shortly.
        await sleep(200);
      }
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
