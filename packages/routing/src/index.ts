import { type CacheAwareConfig, cacheAware } from './policies/cache-aware.js';
import { consistentHash } from './policies/consistent-hash.js';
import { leastLoadedPolicy, powerOfTwo, randomPolicy, roundRobin } from './policies/simple.js';
import type { RoutingPolicy } from './types.js';

export { type CacheAwareConfig, cacheAware, DEFAULT_CACHE_AWARE } from './policies/cache-aware.js';
export { consistentHash } from './policies/consistent-hash.js';
export { leastLoadedPolicy, powerOfTwo, randomPolicy, roundRobin } from './policies/simple.js';
export { RecentPrefixes } from './recent-prefixes.js';
export type { Decision, RoutingPolicy, RoutingRequest, RoutingSnapshot, WorkerView } from './types.js';
export { spreadPick } from './types.js';

export const POLICIES = ['cache_aware', 'round_robin', 'least_loaded', 'power_of_two', 'random', 'consistent_hash'] as const;
export type PolicyName = (typeof POLICIES)[number];

export function makePolicy(name: PolicyName, cacheAwareConfig: Partial<CacheAwareConfig> = {}): RoutingPolicy {
  switch (name) {
    case 'cache_aware':
      return cacheAware(cacheAwareConfig);
    case 'round_robin':
      return roundRobin();
    case 'least_loaded':
      return leastLoadedPolicy();
    case 'power_of_two':
      return powerOfTwo();
    case 'random':
      return randomPolicy();
    case 'consistent_hash':
      return consistentHash();
  }
}
