/**
 * BullMQ keeps jobs in Redis keys that must never be evicted: with a `maxmemory-policy` other
 * than `noeviction`, a Redis under memory pressure would drop queued jobs without a trace
 * (BullMQ's own documentation asks for noeviction). The cluster's index keys are rebuilt from the
 * workers, jobs are not.
 */
import type { RedisClient } from '@kcache/block-index';

/** A warning naming the policy when Redis would evict job keys; null when it would not (or will not say). */
export async function evictionWarning(redis: RedisClient): Promise<string | null> {
  let policy: string | undefined;
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown as string[];
    policy = reply[1];
  } catch {
    return null; // CONFIG is disabled on some managed Redis services: nothing to check
  }
  if (policy === undefined || policy === 'noeviction') return null;
  return `Redis maxmemory-policy is '${policy}': under memory pressure it would evict queued jobs; set it to noeviction (redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction)`;
}
