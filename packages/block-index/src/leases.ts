/** Worker leases in Redis (written by each worker's KV-event publisher): which workers are alive. */
import { leaseKey, parseLease, WORKERS_SET, type WorkerLease } from '@kcache/protocol';
import type { RedisClient } from './connect.js';

/** Workers holding a live lease: listed in `kcache:workers` with their lease key present. */
export async function liveWorkers(redis: RedisClient): Promise<WorkerLease[]> {
  const ids = await redis.smembers(WORKERS_SET);
  // one GET per worker, not MGET: the leases sit in different slots of a Redis Cluster
  const values = await Promise.all(ids.map((id) => redis.get(leaseKey(id))));
  return values.flatMap((v) => {
    const lease = v === null ? null : parseLease(v);
    return lease ? [lease] : [];
  });
}
