export { IndexConsumer, type MatchResult, RedisBlockIndex, type WorkerLease, type WorkerSnapshot } from './redis-index.js';
