// The router and workers on a real 3-master Redis Cluster (private, started here): leases, KV-event
// streams and the block index spread over the nodes by worker hash tag, and routing still finds
// the worker holding a prefix.
import { RedisBlockIndex, startRedisCluster, type TestRedisCluster } from '@kcache/block-index';
import { blocksKey, type GenerateClient, leaseKey, promptBlockHashes } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { routed, routerClient } from './helpers/router-client.js';

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));
const ask = (ids: number[]) => ({ tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens: 4, ignoreEos: true } });

let cluster: TestRedisCluster;
const workers: RunningWorker[] = [];
let router: RunningRouter;
let client: GenerateClient;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  for (const id of ['cw1', 'cw2', 'cw3'])
    workers.push(
      await startWorker({ model: STORIES_260K, port: 0, redisUrl: cluster.url, workerId: id, numBlocks: 64, threads: 1, leaseTtlMs: 3000 }),
    );
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: cluster.url, refreshMs: 100 });
  client = routerClient(router.address);
  await router.refresh();
}, 60_000);

afterAll(async () => {
  client?.close();
  await router?.close();
  for (const w of workers) await w.close();
  await cluster?.stop();
});

test('a worker keys sit in one slot each; the workers spread over the nodes', async () => {
  const slots = await Promise.all(workers.map((w) => cluster.client.cluster('KEYSLOT', leaseKey(w.workerId)) as Promise<number>));
  for (const [i, w] of workers.entries()) expect(await cluster.client.cluster('KEYSLOT', blocksKey(w.workerId))).toBe(slots[i]);
  expect(new Set(slots).size).toBe(3);
});

test('requests sharing a prefix go to the worker holding it, as the cluster-backed index says', async () => {
  const prefix = prompt(64, 3);
  const first = await routed(client, ask([...prefix, 9]));
  for (let i = 0; i < 50; i++) {
    await router.syncIndex();
    const index = new RedisBlockIndex(cluster.client);
    if ((await index.workerBlockCount(first.workerId)) >= 4) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = await new RedisBlockIndex(cluster.client).findMatches(
    promptBlockHashes([...prefix, 10], 16, { modelId: (workers[0] as RunningWorker).engine.model.id }),
    workers.map((w) => w.workerId),
  );
  expect(m.get(first.workerId)?.matchedBlocks).toBe(4);
  for (let i = 0; i < 3; i++) {
    const r = await routed(client, ask([...prefix, 20 + i]));
    expect(r.workerId).toBe(first.workerId);
    expect(r.usage.cachedTokens).toBe(64);
  }
}, 30_000);
