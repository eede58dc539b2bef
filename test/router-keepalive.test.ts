// Liveness by gRPC keepalive: a frozen worker (SIGSTOP) is cut off by the router's keepalive,
// whether or not a stream is running on it, with the stream timeouts set far beyond the test's
// deadlines (60 s), so only keepalive can make these pass. Workers keep the default lease TTL
// (10 s): the frozen worker stays listed in Redis throughout.
import type { GenerateClient, GenerateRequest, GenerateResponse__Output } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

let redis: TestRedis;
let router: RunningRouter;
let client: GenerateClient;
const workers = new Map<string, KcacheProcess>();

beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['kA', 'kB']) {
    const p = spawnKcache(workerArgs('dummy:smol135:bf16', redis.url, id, 64));
    await p.ready;
    workers.set(id, p);
  }
  router = await startRouter({
    apiKeys: null,
    port: 0,
    redisUrl: redis.url,
    refreshMs: 100,
    firstTokenTimeoutMs: 60_000,
    interTokenTimeoutMs: 60_000,
    workerKeepaliveMs: 500,
    breakerOpenMs: 500,
  });
  client = routerClient(router.address);
  await router.refresh();
}, 60_000);

afterAll(async () => {
  client?.close();
  await router?.close();
  for (const p of workers.values()) {
    p.proc.kill('SIGCONT');
    if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
    await p.exited;
  }
  await redis?.stop();
});

const greedy = (seed: number, maxTokens: number): GenerateRequest => ({
  tokenIds: { ids: Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * seed) % 500))) },
  sampling: { temperature: 0 },
  stop: { maxTokens, ignoreEos: true },
});

const lost = async () => (await router.metrics.connectionsLost.get()).values.reduce((n, v) => n + v.value, 0);
const timedOut = async () => (await router.metrics.timeouts.get()).values.reduce((n, v) => n + v.value, 0);

test('a worker frozen mid-stream is cut off by keepalive long before any stream timeout: the stream migrates, token-identical', async () => {
  const request = greedy(29, 32);
  const reference = await routed(client, request, 60_000);
  await new Promise((r) => setTimeout(r, 200));
  await router.syncIndex();
  const frozen = workers.get(reference.workerId) as KcacheProcess;
  const lostBefore = await lost();
  const tokens: number[] = [];
  let final: GenerateResponse__Output['final'];
  try {
    await new Promise<void>((resolve, reject) => {
      const call = client.Generate(request, { deadline: Date.now() + 30_000 });
      call.on('data', (m: GenerateResponse__Output) => {
        if (m.chunk) {
          if (tokens.length === 0) frozen.proc.kill('SIGSTOP');
          tokens.push(...(m.chunk.tokenIds ?? []));
        }
        if (m.final) final = m.final;
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
  } finally {
    frozen.proc.kill('SIGCONT');
  }
  expect(tokens).toEqual(reference.tokenIds);
  expect(final).toMatchObject({ finishReason: 'length', migrations: 1 });
  expect(final?.workerId).not.toBe(reference.workerId);
  expect(await lost()).toBe(lostBefore + 1);
  expect(await timedOut()).toBe(0);
}, 90_000);

test('a worker frozen while idle is cut off by keepalive: the request for its cached prefix goes to the other worker at once', async () => {
  await new Promise((r) => setTimeout(r, 1000)); // the worker frozen above is back
  const request = greedy(11, 8);
  const reference = await routed(client, request, 60_000);
  await new Promise((r) => setTimeout(r, 200));
  await router.syncIndex();
  const frozen = workers.get(reference.workerId) as KcacheProcess;
  const lostBefore = await lost();
  frozen.proc.kill('SIGSTOP');
  let servedBy = '';
  try {
    await new Promise((r) => setTimeout(r, 1500)); // 500 ms pings, 500 ms to answer
    expect(await lost()).toBe(lostBefore + 1);
    const t = performance.now();
    const next = await routed(client, request, 15_000);
    servedBy = next.workerId;
    expect(servedBy).not.toBe(reference.workerId);
    expect(next.tokenIds).toEqual(reference.tokenIds);
    expect(performance.now() - t).toBeLessThan(10_000); // a prefill elsewhere, not a 60 s timeout
  } finally {
    frozen.proc.kill('SIGCONT');
  }
  // once it answers again its connection comes back by itself: with the other worker frozen, it serves
  await new Promise((r) => setTimeout(r, 1000));
  const other = workers.get(servedBy) as KcacheProcess;
  other.proc.kill('SIGSTOP');
  try {
    await new Promise((r) => setTimeout(r, 1500));
    const back = await routed(client, greedy(13, 8), 15_000);
    expect(back.workerId).toBe(reference.workerId);
  } finally {
    other.proc.kill('SIGCONT');
  }
}, 90_000);
