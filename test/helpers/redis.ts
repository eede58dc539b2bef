export { freePort, startRedis, type TestRedis } from '../../packages/bench/src/redis-server.js';
