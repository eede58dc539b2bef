export { checkRedisUrl, connectRedis, type RedisClient, redactRedisUrl } from './connect.js';
export { IndexConsumer } from './consumer.js';
export { liveWorkers, redisInstance } from './leases.js';
export { MemoryBlockIndex } from './memory-index.js';
export { RedisBlockIndex } from './redis-index.js';
export { freePort, startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from './redis-server.js';
export type { ApplyResult, BlockIndex, MatchResult, WorkerSnapshot } from './types.js';
export { sequenceCheck } from './types.js';
