export { freePort, startRedis, type TestRedis } from '../../packages/block-index/src/redis-server.js';
