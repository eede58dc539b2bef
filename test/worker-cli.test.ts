// `kcache serve worker` as a process: it announces itself, serves, and on SIGTERM drains —
// health NOT_SERVING, new requests refused, in-flight requests finish — then exits 0.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { leaseKey } from '@kcache/protocol';
import { Redis } from 'ioredis';
import { expect, test } from 'vitest';
import { REPO_ROOT, STORIES_260K } from './helpers/paths.js';
import { spawnKcache, workerArgs } from './helpers/processes.js';
import { freePort, startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';
import { generate, workerClient } from './helpers/worker-client.js';

test('SIGTERM drains in-flight requests and exits 0', async () => {
  const redis: TestRedis = await startRedis();
  const { proc, events, ready, exited } = spawnKcache([...workerArgs(STORIES_260K, redis.url, 'cli-w', 64)]);
  const { address, kvCacheDtype } = (await ready) as { address: string; kvCacheDtype: string };
  expect(kvCacheDtype).toBe('f16'); // the default for f32 weights: their 16-bit type
  expect(await redis.client.exists(leaseKey('cli-w'))).toBe(1);
  const client = workerClient(address);
  let streaming: Promise<unknown> = Promise.resolve();
  const inflight = generate(
    client,
    { requestId: 'long', tokenIds: [1, 5, 6, 7], sampling: { temperature: 0 }, stop: { maxTokens: 300, ignoreEos: true } },
    { onCall: (call) => (streaming = new Promise((r) => call.once('data', r))) },
  );
  await streaming; // in flight for sure (a fixed sleep raced the connection on a loaded machine)
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
  const args = [...workerArgs(STORIES_260K, redis.url, 'twin', 16)];
  const first = spawnKcache(args);
  await first.ready;
  const second = spawnKcache(args);
  expect(await second.exited).toBe(1);
  expect(first.proc.exitCode).toBeNull();
  first.proc.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  await redis.stop();
}, 60_000);

test('a worker whose Redis is down at start waits for it, then registers; with no Redis in time it exits 1', async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = ['serve', 'worker', '--model', STORIES_260K, '--port', '0', '--redis-url', url, '--num-blocks', '16', '--threads', '1'];
  // nobody ever listens: one line, exit 1, after --redis-wait-ms
  const gaveUp = spawnSync(
    process.execPath,
    [join(REPO_ROOT, 'packages/cli/dist/main.js'), ...args, '--id', 'late-0', '--redis-wait-ms', '800'],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  expect(gaveUp.status).toBe(1);
  expect(gaveUp.stderr).toMatch(new RegExp(`^kcache: redis: ${url} was not reachable within 800 ms`, 'm'));
  expect(gaveUp.stderr).not.toMatch(/\n\s+at /); // no stack
  // Redis comes up a moment after the worker: it registers then, and only then says ready
  const w = spawnKcache([...args, '--id', 'late-1']);
  await new Promise((r) => setTimeout(r, 700));
  expect(w.events).toEqual([]);
  const dir = tempDir('kcache-redis-late-');
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''], { stdio: 'ignore' });
  try {
    await w.ready;
    const client = new Redis(url);
    expect(await client.exists(leaseKey('late-1'))).toBe(1);
    client.disconnect();
    w.proc.kill('SIGTERM');
    expect(await w.exited).toBe(0);
  } finally {
    if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    server.kill('SIGKILL');
    await new Promise((r) => server.once('exit', r));
  }
}, 60_000);

test('a worker whose Redis is gone still stops on SIGTERM (its lease expires by itself)', async () => {
  const redis: TestRedis = await startRedis();
  const w = spawnKcache([...workerArgs(STORIES_260K, redis.url, 'orphan', 16)]);
  await w.ready;
  await redis.stop();
  const t = Date.now();
  w.proc.kill('SIGTERM');
  expect(await w.exited).toBe(0);
  expect(Date.now() - t).toBeLessThan(15_000);
}, 60_000);
