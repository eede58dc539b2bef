// A KCache worker over real gRPC with a private Redis: both tiers in Info and /metrics, KV events
// tagged with the host tier, per-request N checked and applied, outputs equal to the offline
// engine in the same mode, and the prefix cache still hits.
import { Engine, generate as offline } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { decodeKvEvent, kvStreamKey, type WorkerClient } from '@kcache/protocol';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { generate, unary, workerClient } from './helpers/worker-client.js';

const GREEDY = { temperature: 0 };
const KCACHE = { topN: 8, fullLayers: 1 };
let redis: TestRedis;
let w: RunningWorker;
let client: WorkerClient;

function prompt(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));
}

async function offlineGreedy(ids: number[], maxTokens: number, topN = KCACHE.topN): Promise<number[]> {
  const e = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 40, threads: 1, attention: 'kcache', kcache: { ...KCACHE, topN } });
  try {
    const r = await offline(e, { promptIds: ids, maxTokens, sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 }, ignoreEos: true });
    return r.tokenIds;
  } finally {
    e.dispose();
  }
}

beforeAll(async () => {
  redis = await startRedis();
  w = await startWorker({
    model: STORIES_260K,
    port: 0,
    redisUrl: redis.url,
    workerId: 'w-kc',
    numBlocks: 128,
    metricsPort: 0,
    threads: 2,
    attention: 'kcache',
    kcache: KCACHE,
  });
  client = workerClient(w.address);
});
afterAll(async () => {
  client.close();
  await w.close();
  await redis.stop();
});

describe('a KCache worker', () => {
  test('Info reports both tiers and the KCache settings', async () => {
    const info = await unary<Record<string, unknown>>(client, 'Info', {});
    const { kvDeviceBytesPerBlock, kvHostBytesPerBlock } = w.engine.info();
    // stories260K: 5 layers, one full: device holds 5 K + 1 V halves, host 4 V halves
    expect(kvHostBytesPerBlock * 6).toBe(kvDeviceBytesPerBlock * 4);
    expect(info).toMatchObject({
      attentionMode: 'kcache',
      kcacheTopn: 8,
      kcacheFullLayers: 1,
      tiers: [
        { tier: 'device', numBlocks: 128, bytesPerBlock: kvDeviceBytesPerBlock },
        { tier: 'host', numBlocks: 128, bytesPerBlock: kvHostBytesPerBlock },
      ],
    });
  });

  test('greedy outputs equal the offline KCache engine, and a shared prefix hits the cache', async () => {
    const prefix = prompt(48, 2);
    const a = [...prefix, 40, 41];
    const b = [...prefix, 90, 91, 92];
    const ra = await generate(client, { requestId: 'a', tokenIds: a, sampling: GREEDY, stop: { maxTokens: 40, ignoreEos: true } });
    const rb = await generate(client, { requestId: 'b', tokenIds: b, sampling: GREEDY, stop: { maxTokens: 40, ignoreEos: true } });
    expect(rb.usage.cachedTokens).toBe(48);
    expect(ra.tokenIds).toEqual(await offlineGreedy(a, 40));
    expect(rb.tokenIds).toEqual(await offlineGreedy(b, 40));
  });

  test('a request may lower N (and it changes the result); raising it is refused naming the field', async () => {
    const ids = prompt(60, 5);
    const low = await generate(client, {
      requestId: 'low',
      tokenIds: ids,
      sampling: GREEDY,
      kcacheTopn: 2,
      stop: { maxTokens: 40, ignoreEos: true },
    });
    expect(low.tokenIds).toEqual(await offlineGreedy(ids, 40, 2));
    expect(low.tokenIds).not.toEqual(await offlineGreedy(ids, 40));
    await expect(
      generate(client, { requestId: 'high', tokenIds: ids, sampling: GREEDY, kcacheTopn: 9, stop: { maxTokens: 4 } }),
    ).rejects.toMatchObject({ code: 3, details: expect.stringMatching(/^kcache_topn: 9 must be in 1\.\.8/) });
  });

  test('KV events carry the host tier; /metrics reports usage for both tiers', async () => {
    const entries = await redis.client.xrange(kvStreamKey('w-kc'), '-', '+');
    const tiers = new Set(
      entries.flatMap(([, f]) => {
        const e = decodeKvEvent(f)?.event;
        return e?.type === 'stored' ? [e.tier] : [];
      }),
    );
    expect([...tiers]).toEqual(['host']);
    const body = await (await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`)).text();
    expect(body).toMatch(/kcache_kv_cache_usage_perc\{[^}]*tier="device"[^}]*\} /);
    expect(body).toMatch(/kcache_kv_cache_usage_perc\{[^}]*tier="host"[^}]*\} /);
  });
});
