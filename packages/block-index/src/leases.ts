/** Worker leases in Redis (written by each worker's KV-event publisher): which workers are alive. */
import { leaseKey, parseLease, WORKERS_SET, type WorkerLease } from '@kcache/protocol';
import { Cluster } from 'ioredis';
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

/**
 * Which Redis this is: the server's run_id (each master's, on a cluster), new after every restart.
 * A restarted Redis starts empty, so a lease missing from it says nothing about its worker.
 */
export async function redisInstance(redis: RedisClient): Promise<string> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const ids = await Promise.all(nodes.map(async (n) => /run_id:(\w+)/.exec(await n.info('server'))?.[1] ?? ''));
  return ids.sort().join(',');
}
