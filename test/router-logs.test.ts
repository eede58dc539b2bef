// Structured request logs: a `kcache serve router` process prints one JSON line per request (pino)
// with its ids, tokens, TTFT and status, and never the prompt or output text.
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

let redis: TestRedis;
let worker: RunningWorker;
let router: KcacheProcess;

beforeAll(async () => {
  redis = await startRedis();
  worker = await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: 'wl', numBlocks: 64, threads: 1 });
  router = spawnKcache(['serve', 'router', '--port', '0', '--redis-url', redis.url, '--id', 'rl', '--no-auth']);
  await router.ready;
});
afterAll(async () => {
  router?.proc.kill('SIGKILL');
  await router?.exited;
  await worker?.close();
  await redis?.stop();
});

test('one JSON line per request with ids, tokens, TTFT and status; no prompt text', async () => {
  const c = routerClient((await router.ready).address as string);
  try {
    const ok = await routed(c, { text: 'SECRET-PROMPT-4711', requestId: 'req-ok', stop: { maxTokens: 5, ignoreEos: true } });
    await expect(routed(c, { text: 'SECRET-PROMPT-4712', requestId: 'req-bad', model: 'nope' })).rejects.toMatchObject({
      details: expect.stringMatching(/model: no live worker serves 'nope'/),
    });
    for (let i = 0; i < 100 && router.events.filter((e) => e.msg === 'request').length < 2; i++)
      await new Promise((r) => setTimeout(r, 20));
    const lines = router.events.filter((e) => e.msg === 'request');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 30,
      router: 'rl',
      requestId: 'req-ok',
      worker: 'wl',
      promptTokens: ok.usage.promptTokens,
      cachedTokens: 0,
      completionTokens: 5,
      status: 'OK',
    });
    expect(lines[0]?.ttftMs).toEqual(expect.any(Number));
    expect(lines[0]?.time).toEqual(expect.any(Number));
    expect(lines[1]).toMatchObject({ level: 40, requestId: 'req-bad', model: 'nope', status: 'NOT_FOUND', completionTokens: 0 });
    expect(JSON.stringify(router.events)).not.toMatch(/SECRET-PROMPT/);
  } finally {
    c.close();
  }
});

test('a bad --log-level is one line and exit 2', async () => {
  const p = spawnKcache(['serve', 'router', '--port', '0', '--redis-url', redis.url, '--no-auth', '--log-level', 'loud']);
  expect(await p.exited).toBe(2);
});
