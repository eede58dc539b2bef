// Index upkeep: a run reconciles each live worker's index entry with its Snapshot (an entry deleted
// by hand comes back, a bogus one goes), and the scheduled job on a `kcache serve batch` runner
// deletes a SIGKILLed worker's stream and keys and reports it in its metrics. Real workers (one a
// process, to be killed), a private Redis, no router (nothing else tends the index here).
import { connectRedis, type RedisClient } from '@kcache/block-index';
import { grpcSnapshots, runUpkeep } from '@kcache/jobs';
import { blocksKey, cursorKey, kvStreamKey, UPKEEP_KEY, WORKERS_SET } from '@kcache/protocol';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { collect, workerClient } from './helpers/worker-client.js';

let redis: TestRedis;
let conn: RedisClient;
let worker: RunningWorker;
const procs: KcacheProcess[] = [];
const snapshots = grpcSnapshots();

beforeAll(async () => {
  redis = await startRedis();
  conn = connectRedis(redis.url, { maxRetriesPerRequest: null });
  worker = await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: 'u1', numBlocks: 64, threads: 1 });
}, 60_000);

afterAll(async () => {
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  snapshots.close();
  await worker?.close();
  conn?.disconnect();
  await redis?.stop();
});

async function prefill(address: string, ids: number[]) {
  const client = workerClient(address);
  try {
    await collect(client.Generate({ requestId: `p-${ids[1]}`, tokenIds: ids, stop: { maxTokens: 1, ignoreEos: true } }));
  } finally {
    client.close();
  }
}

const prompt = (k: number) => [1, ...Array.from({ length: 63 }, (_, i) => 3 + ((i * 5 + k * 11) % 256))];

test("a run repairs drift: the index comes to equal each live worker's snapshot", async () => {
  await prefill(worker.address, prompt(1));
  await prefill(worker.address, prompt(2));
  const first = await runUpkeep(conn, snapshots);
  expect(first.resynced).toEqual(['u1']); // nothing had applied its events yet: all missing
  expect(first.missing).toBeGreaterThan(0);
  const held = worker.blocks
    .snapshot()
    .map((b) => b.hash)
    .sort();
  expect((await conn.hkeys(blocksKey('u1'))).sort()).toEqual(held);
  // damage by hand: one entry deleted, one that no worker holds
  await conn.hdel(blocksKey('u1'), held[0] as string);
  await conn.hset(blocksKey('u1'), 'deadbeefdeadbeef', 'device|0');
  const second = await runUpkeep(conn, snapshots);
  expect(second).toMatchObject({ liveWorkers: 1, missing: 1, extra: 1, resynced: ['u1'], purged: [], indexBlocks: held.length });
  expect((await conn.hkeys(blocksKey('u1'))).sort()).toEqual(held);
  // a block the index places in another tier than the worker holds it in (an offload move it missed)
  await conn.hset(blocksKey('u1'), held[1] as string, 'offload_disk|0');
  const third = await runUpkeep(conn, snapshots);
  expect(third).toMatchObject({ missing: 0, extra: 0, misplaced: 1, resynced: ['u1'] });
  expect((await conn.hget(blocksKey('u1'), held[1] as string))?.split('|')[0]).toBe('device');
  const clean = await runUpkeep(conn, snapshots);
  expect(clean).toMatchObject({ missing: 0, extra: 0, misplaced: 0, resynced: [] });
  expect(await conn.hget(UPKEEP_KEY, 'index_blocks')).toBe(String(held.length));
});

test("the scheduled job on a batch runner deletes a SIGKILLed worker's stream and keys", async () => {
  const dead = spawnKcache([...workerArgs('dummy:tiny', redis.url, 'u2', 64), '--lease-ttl-ms', '500']);
  procs.push(dead);
  const { address } = (await dead.ready) as { address: string };
  await prefill(address, prompt(3));
  await runUpkeep(conn, snapshots); // u2's blocks enter the index
  expect(await conn.hlen(blocksKey('u2'))).toBeGreaterThan(0);
  expect(await conn.exists(kvStreamKey('u2'))).toBe(1);
  dead.proc.kill('SIGKILL');
  await dead.exited;
  const runner = spawnKcache([
    'serve',
    'batch',
    '--redis-url',
    redis.url,
    '--router',
    'http://127.0.0.1:9', // no batch is submitted here: upkeep alone
    '--upkeep-every-ms',
    '300',
    '--metrics-port',
    '0',
  ]);
  procs.push(runner);
  const { metricsPort } = (await runner.ready) as { metricsPort: number };
  const until = Date.now() + 20_000;
  while ((await conn.exists(kvStreamKey('u2'), blocksKey('u2'), cursorKey('u2'))) > 0 && Date.now() < until)
    await new Promise((r) => setTimeout(r, 100));
  expect(await conn.exists(kvStreamKey('u2'), blocksKey('u2'), cursorKey('u2'))).toBe(0);
  expect(await conn.sismember(WORKERS_SET, 'u2')).toBe(0);
  // the live worker keeps its entry
  expect(await conn.hlen(blocksKey('u1'))).toBeGreaterThan(0);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^kcache_index_workers_purged_total\{[^}]*\} 1$/m);
  expect(metrics).toMatch(/^kcache_index_live_workers\{[^}]*\} 1$/m);
  expect(metrics).toMatch(/^kcache_index_blocks\{[^}]*\} [1-9]\d*$/m);
  runner.proc.kill('SIGTERM');
  expect(await runner.exited).toBe(0);
}, 60_000);
