// Faults that are not the worker's: a router with no worker yet, requests no worker can hold, and
// a cluster whose every queue is full. Real router, real workers (stories260K), private Redis.
import * as grpc from '@grpc/grpc-js';
import { KcacheClient } from '@kcache/client';
import type { GenerateClient } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));
const ask = (ids: number[], max: number) => ({
  tokenIds: { ids },
  sampling: { temperature: 0 },
  stop: { maxTokens: max, ignoreEos: true },
});

let redis: TestRedis;
let router: RunningRouter;
let client: GenerateClient;
const workers: RunningWorker[] = [];

beforeAll(async () => {
  redis = await startRedis();
  // a breaker that opens on the first failure it counts: any miscounted failure would show
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 60_000, breakerThreshold: 1, metricsPort: 0 });
  client = routerClient(router.address);
});
afterAll(async () => {
  client?.close();
  await router?.close();
  for (const w of workers) await w.close();
  await redis?.stop();
});

describe('a router before and after it knows workers', () => {
  test('NOT_SERVING with no worker; the first request looks the leases up at once instead of waiting for the next poll', async () => {
    const health = new KcacheClient(router.address);
    expect(await health.checkHealth()).toBe('NOT_SERVING');
    for (const id of ['f1', 'f2'])
      workers.push(
        await startWorker({
          model: STORIES_260K,
          port: 0,
          redisUrl: redis.url,
          workerId: id,
          numBlocks: 8,
          maxNumSeqs: 1,
          maxWaiting: 1,
          threads: 1,
        }),
      );
    // the router polls leases once a minute here: only the lookup on demand can find the workers
    const r = await routed(client, ask(prompt(20, 1), 4));
    expect(r.finishReason).toBe('length');
    expect(await health.checkHealth()).toBe('SERVING');
    health.close();
  });
});

describe('failures that are the request’s, not the worker’s', () => {
  const breakersOpen = async () => {
    const body = await (await fetch(`http://127.0.0.1:${router.metricsPort}/metrics`)).text();
    return [...body.matchAll(/kcache_router_breaker_open\{[^}]*\} (\d+)/g)].map((m) => Number(m[1]));
  };

  test('a request no worker can hold gets RESOURCE_EXHAUSTED naming why, and opens no breaker', async () => {
    for (let i = 0; i < 3; i++) {
      const err = await routed(client, ask(prompt(100, 2 + i), 200)).catch((e) => e);
      expect(err).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      expect(err.details).toMatch(/^no worker can take the request now \(tried f[12], f[12]\): max_tokens: .* needs \d+ KV blocks/);
    }
    expect(await breakersOpen()).toEqual([0, 0]);
    expect((await routed(client, ask(prompt(20, 9), 4))).finishReason).toBe('length');
  });

  test('prompts beyond the model are refused at the router, naming the field, before any tokenizing or routing', async () => {
    const huge = await routed(client, { text: 'x'.repeat(2_000_000) }).catch((e) => e);
    expect(huge).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(huge.details).toBe('text: 2000000 bytes exceeds the limit of 8192 bytes for this model (context 512 tokens)');
    const long = await routed(client, ask(prompt(600, 3), 4)).catch((e) => e);
    expect(long).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(long.details).toBe('token_ids: a prompt of 600 tokens leaves no room in the context length 512');
    expect(await breakersOpen()).toEqual([0, 0]);
  });

  test('every queue full: RESOURCE_EXHAUSTED with a retry-after hint, never UNAVAILABLE; the accepted requests finish', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        routed(client, ask(prompt(10, 20 + i), 60)).then(
          (r) => ({ ok: true as const, r }),
          (e: grpc.ServiceError) => ({ ok: false as const, e }),
        ),
      ),
    );
    const refused = results.flatMap((x) => (x.ok ? [] : [x.e]));
    const served = results.flatMap((x) => (x.ok ? [x.r] : []));
    expect(refused.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThan(0);
    for (const e of refused) {
      expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      // the worker's own refusal, or the router's for a worker it counts at the limit of its lease
      expect(e.details).toMatch(/queue is full|at its request limit|at its limit of running and queued requests/);
      expect(e.metadata.get('retry-after-ms')).toEqual(['500']);
    }
    for (const r of served) expect(r.finishReason).toBe('length');
    expect(await breakersOpen()).toEqual([0, 0]);
  });
});

test('an admission limit on the router: past it, RESOURCE_EXHAUSTED with the retry hint; the admitted request finishes', async () => {
  const limited = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100, maxInFlight: 1 });
  const c = routerClient(limited.address);
  try {
    await limited.refresh();
    const first = c.Generate(ask(prompt(10, 40), 100), { deadline: Date.now() + 30_000 }); // fits the workers' 8 blocks
    const firstDone = new Promise<string>((resolve, reject) => {
      let reason = '';
      first.on('data', (m) => {
        if (m.final) reason = m.final.finishReason ?? '';
      });
      first.on('end', () => resolve(reason));
      first.on('error', reject);
    });
    await Promise.race([new Promise((r) => first.once('data', r)), firstDone]);
    const second = await routed(c, ask(prompt(10, 41), 4)).catch((e) => e);
    expect(second).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect(second.details).toMatch(/limit of 1 requests \(--max-inflight\)/);
    expect(second.metadata.get('retry-after-ms')).toEqual(['500']);
    expect(await firstDone).toBe('length');
    expect((await routed(c, ask(prompt(10, 42), 4))).finishReason).toBe('length'); // admitted again
  } finally {
    c.close();
    await limited.close();
  }
});
