/**
 * Index upkeep: keeps the Redis block index honest over days, as a repeatable BullMQ job (queue
 * `kcache-upkeep`) that the batch runners take turns running; a Redis lock keeps one run at a
 * time cluster-wide even when a run outlasts its interval. One run:
 *   - purges dead workers (no live lease): their blocks, cursor and KV stream, and their id;
 *   - reconciles each live worker's index entry with the worker's own Snapshot and resyncs the
 *     worker where they differ (drift: blocks the index lacks or holds in excess);
 *   - trims each live worker's KV stream to `streamMaxLen` entries;
 *   - records what it found in UPKEEP_KEY and in the runner's metrics.
 * Routers already purge dead workers and resync on sequence gaps while they run; upkeep covers
 * what they cannot see: an index edited or damaged behind their back, and a cluster with no router.
 */
import type * as grpc from '@grpc/grpc-js';
import { liveWorkers, RedisBlockIndex, type RedisClient, type WorkerSnapshot } from '@kcache/block-index';
import {
  BULLMQ_PREFIX,
  blocksKey,
  type ClusterTls,
  fetchSnapshot,
  kvStreamKey,
  protos,
  UPKEEP_KEY,
  WORKERS_SET,
  type WorkerClient,
  type WorkerLease,
  workerChannelCredentials,
} from '@kcache/protocol';
import { Queue, Worker } from 'bullmq';

export const UPKEEP_QUEUE = 'kcache-upkeep';
const LOCK_KEY = `${UPKEEP_KEY}:lock`;

export interface UpkeepResult {
  liveWorkers: number;
  /** Blocks the index holds for live workers after the run. */
  indexBlocks: number;
  /** Blocks a worker holds that the index lacked, and blocks the index held that the worker did not. */
  missing: number;
  extra: number;
  /** Blocks both hold, the index in another tier than the worker's (an offload move it missed). */
  misplaced: number;
  /** Workers whose entry was resynced from their snapshot. */
  resynced: string[];
  /** Dead workers whose keys were deleted. */
  purged: string[];
  /** Stream entries trimmed. */
  trimmed: number;
}

export type SnapshotOf = (lease: WorkerLease) => Promise<WorkerSnapshot>;

/** A worker's Snapshot over gRPC (mutual TLS when the cluster uses it). */
export function grpcSnapshots(tls: ClusterTls | null = null): SnapshotOf & { close(): void } {
  const clients = new Map<string, WorkerClient>();
  const f = (lease: WorkerLease) => {
    let c = clients.get(`${lease.workerId}@${lease.address}`);
    if (!c) {
      c = new (protos().v1.Worker)(lease.address, workerChannelCredentials(tls, lease.workerId)) as unknown as WorkerClient;
      clients.set(`${lease.workerId}@${lease.address}`, c);
    }
    return fetchSnapshot(c, 5000);
  };
  return Object.assign(f, {
    close() {
      for (const c of clients.values()) (c as unknown as grpc.Client).close();
      clients.clear();
    },
  });
}

/** One upkeep pass (the job's body; callable directly). */
export async function runUpkeep(redis: RedisClient, snapshotOf: SnapshotOf, o: { streamMaxLen?: number } = {}): Promise<UpkeepResult> {
  const index = new RedisBlockIndex(redis);
  const live = await liveWorkers(redis);
  const liveIds = new Set(live.map((l) => l.workerId));
  const result: UpkeepResult = {
    liveWorkers: live.length,
    indexBlocks: 0,
    missing: 0,
    extra: 0,
    misplaced: 0,
    resynced: [],
    purged: [],
    trimmed: 0,
  };
  const known = new Set([...(await index.indexedWorkers()), ...(await redis.smembers(WORKERS_SET))]);
  for (const w of known) {
    if (liveIds.has(w)) continue;
    await index.removeWorker(w);
    await redis.srem(WORKERS_SET, w);
    result.purged.push(w);
  }
  for (const lease of live) {
    let snap: WorkerSnapshot;
    try {
      snap = await snapshotOf(lease);
    } catch {
      continue; // unreachable now: the next run (or its lease's end) settles it
    }
    // index: block hash -> "tier|storedAtMs"; the worker: block hash -> tier
    const indexed = new Map(Object.entries(await redis.hgetall(blocksKey(lease.workerId))).map(([h, v]) => [h, v.split('|')[0]]));
    const held = new Map(snap.tiers.flatMap((t) => t.hashes.map((h): [string, string] => [h, t.tier])));
    let missing = 0;
    let misplaced = 0;
    for (const [h, tier] of held) {
      const at = indexed.get(h);
      if (at === undefined) missing++;
      else if (at !== tier) misplaced++;
    }
    let extra = 0;
    for (const h of indexed.keys()) if (!held.has(h)) extra++;
    if (missing + extra + misplaced > 0) {
      await index.resync(lease.workerId, snap);
      result.resynced.push(lease.workerId);
    }
    result.missing += missing;
    result.extra += extra;
    result.misplaced += misplaced;
    result.indexBlocks += await index.workerBlockCount(lease.workerId);
    result.trimmed += Number(await redis.xtrim(kvStreamKey(lease.workerId), 'MAXLEN', '~', o.streamMaxLen ?? 10_000));
  }
  await redis.hset(UPKEEP_KEY, {
    at: Date.now(),
    live_workers: result.liveWorkers,
    index_blocks: result.indexBlocks,
    missing: result.missing,
    extra: result.extra,
    misplaced: result.misplaced,
    resynced: result.resynced.join(','),
    purged: result.purged.join(','),
    trimmed: result.trimmed,
  });
  return result;
}

export interface UpkeepScheduler {
  close(): Promise<void>;
}

/**
 * Schedules upkeep every `everyMs` (one job scheduler cluster-wide, however many runners call
 * this) and takes upkeep jobs on this runner. `onRun` sees each run's result.
 */
export async function startUpkeep(
  redis: RedisClient,
  o: { everyMs?: number; snapshotOf: SnapshotOf; streamMaxLen?: number; onRun?: (r: UpkeepResult) => void },
): Promise<UpkeepScheduler> {
  const everyMs = o.everyMs ?? 30_000;
  const queue = new Queue(UPKEEP_QUEUE, { connection: redis, prefix: BULLMQ_PREFIX });
  await queue.upsertJobScheduler('index-upkeep', { every: everyMs }, { name: 'upkeep', opts: { removeOnComplete: 10, removeOnFail: 10 } });
  const worker = new Worker(
    UPKEEP_QUEUE,
    async () => {
      // one run at a time cluster-wide, even when a run outlasts the interval
      const token = `${process.pid}-${Date.now()}`;
      if ((await redis.set(LOCK_KEY, token, 'PX', Math.max(everyMs * 4, 60_000), 'NX')) !== 'OK') return 'another run is active';
      try {
        const r = await runUpkeep(redis, o.snapshotOf, { streamMaxLen: o.streamMaxLen });
        o.onRun?.(r);
        return r;
      } finally {
        if ((await redis.get(LOCK_KEY)) === token) await redis.del(LOCK_KEY);
      }
    },
    { connection: redis, prefix: BULLMQ_PREFIX, concurrency: 1 },
  );
  worker.on('error', () => {});
  await worker.waitUntilReady();
  return {
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}
