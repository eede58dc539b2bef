// `kcache serve worker` as a process: it announces itself, serves, and on SIGTERM drains —
// health NOT_SERVING, new requests refused, in-flight requests finish — then exits 0.
import * as grpc from '@grpc/grpc-js';
import { leaseKey } from '@kcache/protocol';
import { expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { generate, workerClient } from './helpers/worker-client.js';

test('SIGTERM drains in-flight requests and exits 0', async () => {
  const redis: TestRedis = await startRedis();
  const { proc, events, ready, exited } = spawnKcache([
    'serve',
    'worker',
    '--model',
    STORIES_260K,
    '--port',
    '0',
    '--redis-url',
    redis.url,
    '--id',
    'cli-w',
    '--num-blocks',
    '64',
    '--threads',
    '1',
  ]);
  const { address } = (await ready) as { address: string };
  expect(await redis.client.exists(leaseKey('cli-w'))).toBe(1);
  const client = workerClient(address);
  const inflight = generate(client, {
    requestId: 'long',
    tokenIds: [1, 5, 6, 7],
    sampling: { temperature: 0 },
    stop: { maxTokens: 300, ignoreEos: true },
  });
  await new Promise((r) => setTimeout(r, 30));
  proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 30));
  const refused = await generate(client, { requestId: 'late', tokenIds: [1, 5] }).catch((e) => e);
  expect(refused.code).toBe(grpc.status.UNAVAILABLE);
  const done = await inflight;
  expect(done.finishReason).toBe('length');
  expect(done.tokenIds).toHaveLength(300);
  expect(await exited).toBe(0);
  expect(events.map((e) => e.event)).toEqual(['ready', 'draining', 'stopped']);
  expect(await redis.client.exists(leaseKey('cli-w'))).toBe(0);
  client.close();
  await redis.stop();
}, 60_000);

test('a second worker with an id in use exits 1 and leaves the first alone', async () => {
  const redis: TestRedis = await startRedis();
  const args = [
    'serve',
    'worker',
    '--model',
    STORIES_260K,
    '--port',
    '0',
    '--redis-url',
    redis.url,
    '--id',
    'twin',
    '--num-blocks',
    '16',
    '--threads',
    '1',
  ];
  const first = spawnKcache(args);
  await first.ready;
  const second = spawnKcache(args);
  expect(await second.exited).toBe(1);
  expect(first.proc.exitCode).toBeNull();
  first.proc.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  await redis.stop();
}, 60_000);
