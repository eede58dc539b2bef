// Mid-stream migration: the worker serving a stream is killed (SIGKILL), frozen (SIGSTOP) or
// drained with a short grace after some tokens; the router resumes the request on another worker
// and the client sees one uninterrupted stream, token for token what a run without the fault gives,
// with correct usage and the migration noted. Real worker processes, a private Redis.
import type { GenerateClient, GenerateRequest, GenerateResponse__Output } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

/** A worker on a model slow enough on one thread that a stream is still running when its worker dies. */
function slowWorker(redisUrl: string, id: string, extra: string[] = []): KcacheProcess {
  return spawnKcache([...workerArgs('dummy:smol135:bf16', redisUrl, id, 64), ...extra]);
}

/**
 * A greedy request, its output without faults (the reference), and the worker that served it:
 * the same prompt again goes there, where its prefix is cached.
 */
async function referenceRun(r: RunningRouter, c: GenerateClient, seed: number, maxTokens: number) {
  const ids = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * seed) % 500)));
  const request: GenerateRequest = { tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens, ignoreEos: true } };
  const reference = await routed(c, request, 60_000);
  expect(reference.tokenIds).toHaveLength(maxTokens);
  await new Promise((res) => setTimeout(res, 200));
  await r.syncIndex();
  return { request, reference };
}

/** Streams `request`; `fault` runs once, when the first token arrives. */
async function streamWithFault(c: GenerateClient, request: GenerateRequest, fault: () => void) {
  const out = { tokens: [] as number[], final: undefined as GenerateResponse__Output['final'], longestGapMs: 0 };
  let last = 0;
  await new Promise<void>((resolve, reject) => {
    const call = c.Generate(request, { deadline: Date.now() + 60_000 });
    call.on('data', (m: GenerateResponse__Output) => {
      const now = performance.now();
      if (last) out.longestGapMs = Math.max(out.longestGapMs, now - last);
      last = now;
      if (m.chunk) {
        if (out.tokens.length === 0) fault();
        out.tokens.push(...(m.chunk.tokenIds ?? []));
      }
      if (m.final) out.final = m.final;
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  return out;
}

let redis: TestRedis;
let router: RunningRouter;
let client: GenerateClient;
const workers = new Map<string, KcacheProcess>();

beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['mA', 'mB']) {
    const p = slowWorker(redis.url, id, ['--lease-ttl-ms', '1500']);
    await p.ready;
    workers.set(id, p);
  }
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100 });
  client = routerClient(router.address);
  await router.refresh();
}, 60_000);

afterAll(async () => {
  client?.close();
  await router?.close();
  for (const p of workers.values()) {
    if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
    await p.exited;
  }
  await redis?.stop();
});

test('SIGKILL of the serving worker mid-stream: the stream completes on the other worker, token-identical, usage intact', async () => {
  const { request, reference } = await referenceRun(router, client, 37, 48);
  const doomed = reference.workerId;
  const { tokens, final } = await streamWithFault(client, request, () => workers.get(doomed)?.proc.kill('SIGKILL'));
  expect(doomed).toMatch(/^m[AB]$/);
  expect(tokens).toEqual(reference.tokenIds);
  expect(final).toMatchObject({ finishReason: 'length', migrations: 1, usage: { promptTokens: 40, completionTokens: 48 } });
  expect(final?.workerId).not.toBe(doomed);
  expect((await router.metrics.migrations.get()).values.reduce((n, v) => n + v.value, 0)).toBe(1);
}, 60_000);

test('SIGSTOP of the serving worker mid-stream: after the inter-token timeout the stream moves on, token-identical', async () => {
  // a third worker, so that two are alive; a router that gives a silent worker 800 ms
  const third = slowWorker(redis.url, 'mC', ['--lease-ttl-ms', '1500']);
  await third.ready;
  workers.set('mC', third);
  const quick = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100, interTokenTimeoutMs: 800 });
  const c = routerClient(quick.address);
  try {
    await quick.refresh();
    const { request, reference } = await referenceRun(quick, c, 53, 32);
    const frozen = workers.get(reference.workerId) as KcacheProcess;
    const { tokens, final, longestGapMs } = await streamWithFault(c, request, () => frozen.proc.kill('SIGSTOP'));
    expect(tokens).toEqual(reference.tokenIds);
    expect(final).toMatchObject({ finishReason: 'length', migrations: 1 });
    expect(final?.workerId).not.toBe(reference.workerId);
    // the stream waited for the timeout, not for the frozen worker (a loose bound: it is the 800 ms
    // timeout plus a prefill of 41 tokens elsewhere, far from the SIGSTOP's unbounded wait)
    expect(longestGapMs).toBeLessThan(10_000);
    expect((await quick.metrics.timeouts.get()).values.some((v) => v.labels.phase === 'between_tokens' && v.value > 0)).toBe(true);
    // its breaker is open: a new request with the same (cached there) prefix goes elsewhere at once
    const next = await routed(c, request, 10_000);
    expect(next.workerId).not.toBe(reference.workerId);
    expect(next.tokenIds).toEqual(reference.tokenIds);
  } finally {
    for (const p of workers.values()) p.proc.kill('SIGCONT');
    c.close();
    await quick.close();
  }
}, 90_000);

test('a worker drained with a short grace gives its stream up; the router resumes it elsewhere: nothing is truncated', async () => {
  const own = await startRedis();
  const drained: KcacheProcess[] = [];
  const r = await startRouter({ apiKeys: null, port: 0, redisUrl: own.url, refreshMs: 100 });
  const c = routerClient(r.address);
  try {
    for (const id of ['dA', 'dB']) {
      const p = slowWorker(own.url, id, ['--drain-grace-ms', '50']);
      await p.ready;
      drained.push(p);
    }
    await r.refresh();
    const { request, reference } = await referenceRun(r, c, 71, 40);
    const serving = drained[reference.workerId === 'dA' ? 0 : 1] as KcacheProcess;
    const { tokens, final } = await streamWithFault(c, request, () => serving.proc.kill('SIGTERM'));
    expect(await serving.exited).toBe(0);
    expect(tokens).toEqual(reference.tokenIds);
    expect(final).toMatchObject({ finishReason: 'length', migrations: 1, usage: { completionTokens: 40 } });
  } finally {
    c.close();
    await r.close();
    for (const p of drained) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
    await Promise.all(drained.map((p) => p.exited));
    await own.stop();
  }
}, 90_000);
