// Client authentication and tenant isolation at the router: API keys on every call of the public
// service, one prefix cache per tenant, request ids scoped per tenant, per-tenant rate limits.
// A real router and a real worker (stories260K) over loopback, a private Redis.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { GenerateClient, GenerateRequest } from '@kcache/protocol';
import { ApiKeys, type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REPO_ROOT, STORIES_260K } from './helpers/paths.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { listServices } from './helpers/reflection.js';
import { routerClient } from './helpers/router-client.js';
import { tempDir } from './helpers/temp.js';
import { collect, type GenerateResult } from './helpers/worker-client.js';

const KEY_A = 'key-a-0123456789abcdef';
const KEY_A2 = 'key-a2-0123456789abcdef';
const KEY_B = 'key-b-0123456789abcdef';
const KEY_SLOW = 'key-slow-0123456789abcdef';

let redis: TestRedis;
let worker: RunningWorker;
let router: RunningRouter;
let client: GenerateClient;

beforeAll(async () => {
  redis = await startRedis();
  worker = await startWorker({ model: STORIES_260K, port: 0, redisUrl: redis.url, workerId: 'wa', numBlocks: 128, threads: 1 });
  const file = join(tempDir('kcache-keys-'), 'api-keys');
  writeFileSync(file, `${KEY_A} acme\n${KEY_A2} acme\n${KEY_B} beta\n${KEY_SLOW} slow 1  # one request per second\n`);
  router = await startRouter({ apiKeys: ApiKeys.load(file), port: 0, redisUrl: redis.url, refreshMs: 100 });
  client = routerClient(router.address);
  await router.refresh();
});
afterAll(async () => {
  client?.close();
  await router?.close();
  await worker?.close();
  await redis?.stop();
});

const auth = (key: string) => {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
};
const prompt = (seed: number) => Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));
const ask = (ids: number[], extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokenIds: { ids },
  sampling: { temperature: 0 },
  stop: { maxTokens: 4, ignoreEos: true },
  ...extra,
});
const as = (key: string | null, r: GenerateRequest): Promise<GenerateResult> =>
  collect(client.Generate(r, key === null ? new grpc.Metadata() : auth(key), { deadline: Date.now() + 30_000 }));
const unary = (method: 'Tokenize' | 'ListModels', req: object, md: grpc.Metadata) =>
  new Promise((res, rej) =>
    (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: Error | null, v: unknown) => void) => void>)[method]?.(
      req,
      md,
      (e, v) => (e ? rej(e) : res(v)),
    ),
  );

describe('authentication', () => {
  test('every call of the public service without a key, or with a wrong one, is UNAUTHENTICATED', async () => {
    const wrong = auth('key-x-0123456789abcdef');
    const malformed = new grpc.Metadata();
    malformed.set('authorization', KEY_A); // no "Bearer"
    for (const md of [new grpc.Metadata(), wrong, malformed]) {
      await expect(collect(client.Generate(ask(prompt(1)), md, { deadline: Date.now() + 10_000 }))).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      });
      await expect(unary('Tokenize', { text: 'hi' }, md)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      await expect(unary('ListModels', {}, md)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    }
    await expect(as(null, ask(prompt(1)))).rejects.toMatchObject({ details: 'authorization: send "Bearer <API key>" metadata' });
    expect((await as(KEY_A, ask(prompt(1)))).finishReason).toBe('length');
    expect(await unary('ListModels', {}, auth(KEY_B))).toMatchObject({ models: [{ workers: 1 }] });
  });
});

test("the router's reflection lists the public service and never the workers' internal one; it stays open, like health", async () => {
  const body = await listServices(router.address);
  expect(body).toContain('kcache.v1.Generate');
  expect(body).not.toContain('kcache.v1.Worker');
});

describe('tenant isolation', () => {
  test("a tenant's cached_tokens never reveal another tenant's prompt; within a tenant, hits still happen", async () => {
    const secret = prompt(7);
    const first = await as(KEY_A, ask(secret));
    expect(first.usage.cachedTokens).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    await router.syncIndex();
    // another key of the same tenant shares its cache
    expect((await as(KEY_A2, ask(secret))).usage.cachedTokens).toBe(32);
    // tenant B, same prompt, same worker: nothing cached for it, with or without its own salt
    expect((await as(KEY_B, ask(secret))).usage.cachedTokens).toBe(0);
    expect((await as(KEY_B, ask(secret, { cacheSalt: 'x' }))).usage.cachedTokens).toBe(0);
    // and a salt refines the cache within a tenant
    expect((await as(KEY_A, ask(secret, { cacheSalt: 'x' }))).usage.cachedTokens).toBe(0);
    expect((await as(KEY_A, ask(secret))).usage.cachedTokens).toBe(32);
  });

  test('request ids are scoped per tenant: two tenants may use one id at once; one tenant may not', async () => {
    const long = (seed: number) => ask(prompt(seed), { requestId: 'job-1', stop: { maxTokens: 200, ignoreEos: true } });
    const [a, b] = await Promise.all([as(KEY_A, long(20)), as(KEY_B, long(21))]);
    expect([a.finishReason, b.finishReason]).toEqual(['length', 'length']);
    const results = await Promise.allSettled([as(KEY_A, long(22)), as(KEY_A2, long(23))]);
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as grpc.ServiceError] : []));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ code: grpc.status.ALREADY_EXISTS, details: expect.stringMatching(/job-1 is already in flight/) });
  });
});

describe('rate limits', () => {
  test('a tenant over its request rate gets RESOURCE_EXHAUSTED with a retry hint; another tenant is unaffected', async () => {
    expect((await as(KEY_SLOW, ask(prompt(30)))).finishReason).toBe('length');
    const over = await as(KEY_SLOW, ask(prompt(31))).catch((e: grpc.ServiceError) => e);
    expect(over).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'tenant slow: over its requests per second limit' });
    const retryAfter = Number((over as grpc.ServiceError).metadata.get('retry-after-ms')[0]);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(1000);
    for (let i = 0; i < 3; i++) expect((await as(KEY_B, ask(prompt(40 + i)))).finishReason).toBe('length');
    await new Promise((r) => setTimeout(r, retryAfter + 20));
    expect((await as(KEY_SLOW, ask(prompt(32)))).finishReason).toBe('length');
  });
});

test('kcache ask: a wrong key exits 1 with one line naming UNAUTHENTICATED; KCACHE_API_KEY is read', async () => {
  // asynchronously: the router runs in this process and must answer meanwhile
  const ask = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ status: number | null; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [join(REPO_ROOT, 'packages/cli/dist/main.js'), 'ask', '--addr', router.address, ...args, 'hi'],
        { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } },
        (e, _stdout, stderr) => resolve({ status: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
      ),
    );
  const wrong = await ask(['--api-key', 'key-x-0123456789abcdef']);
  expect(wrong.status).toBe(1);
  expect(wrong.stderr.trim().split('\n')).toEqual([
    'kcache: UNAUTHENTICATED: authorization: unknown API key (give the key with --api-key or KCACHE_API_KEY)',
  ]);
  // the right key gets past authentication (stories260K has no tokenizer: the text itself is refused)
  const right = await ask([], { KCACHE_API_KEY: KEY_B });
  expect(right.status).toBe(1);
  expect(right.stderr).toMatch(/INVALID_ARGUMENT: text: model .* has no tokenizer/);
});

test('the metrics endpoint can listen on an interface of its own (--metrics-host), apart from the public gRPC port', async () => {
  const r = await startRouter({ apiKeys: null, port: 0, host: '127.0.0.1', redisUrl: redis.url, metricsPort: 0, metricsHost: '127.0.0.2' });
  try {
    expect((await fetch(`http://127.0.0.2:${r.metricsPort}/metrics`)).status).toBe(200);
    await expect(fetch(`http://127.0.0.1:${r.metricsPort}/metrics`)).rejects.toThrow();
  } finally {
    await r.close();
  }
});
