// Redis with a password: every process reaches it through a redis://:password@ URL; one without
// the password is refused and says so in one line. A real redis-server with requirepass.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { checkRedisUrl, redactRedisUrl } from '@kcache/block-index';
import { type RunningRouter, startRouter } from '@kcache/router';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { REPO_ROOT, STORIES_260K } from './helpers/paths.js';
import { type KcacheProcess, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

let redis: TestRedis;
let worker: KcacheProcess;
let router: RunningRouter;

beforeAll(async () => {
  redis = await startRedis([], 's3cret/pw');
  worker = spawnKcache(workerArgs(STORIES_260K, redis.url, 'wp', 32));
  await worker.ready;
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100 });
});
afterAll(async () => {
  await router?.close();
  worker?.proc.kill('SIGKILL');
  await worker?.exited;
  await redis?.stop();
});

test('a worker and a router with the password in the URL register, route and serve', async () => {
  expect(redis.url).toMatch(/^redis:\/\/:s3cret%2Fpw@127\.0\.0\.1:\d+$/);
  const c = routerClient(router.address);
  try {
    const r = await routed(c, { tokenIds: { ids: [1, 5, 9] }, stop: { maxTokens: 3, ignoreEos: true } });
    expect(r).toMatchObject({ workerId: 'wp', finishReason: 'length' });
  } finally {
    c.close();
  }
});

test('a worker without the password is refused by Redis: it exits 1 at once with one line', async () => {
  const url = redis.url.replace(/:[^:@/]*@/, '');
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'packages/cli/dist/main.js'), ...workerArgs(STORIES_260K, url, 'wq', 32)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  expect(await new Promise((r) => proc.once('exit', r))).toBe(1);
  // the model's loading progress, then the error: one line
  const lines = stderr.trim().split('\n');
  expect(lines.filter((l) => !/^load(ing|ed) /.test(l))).toEqual([`kcache: redis: ${url}: NOAUTH Authentication required.`]);
  expect(lines.at(-1)).toBe(`kcache: redis: ${url}: NOAUTH Authentication required.`);
});

test('URLs with credentials are accepted everywhere and never printed with their password', () => {
  for (const u of ['redis://user:pw@h:1', 'rediss://:pw@h:6380/2', 'redis-cluster://user:pw@a:1,b:2']) expect(checkRedisUrl(u)).toBeNull();
  expect(checkRedisUrl('redis-cluster://user:pw@a:1,b')).toBe("'b' is not host:port");
  expect(redactRedisUrl('redis://user:pw@h:1')).toBe('redis://user:***@h:1');
  expect(redactRedisUrl('redis-cluster://:pw@a:1,b:2')).toBe('redis-cluster://:***@a:1,b:2');
  expect(redactRedisUrl('redis://h:1')).toBe('redis://h:1');
});
