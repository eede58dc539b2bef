// Mid-stream migration: the worker serving a stream is killed (SIGKILL, a real process) after some
// tokens; the router resumes it on the other worker and the client sees one uninterrupted stream,
// token for token what a run without the fault gives, with correct usage and the migration noted.
import type { GenerateClient, GenerateResponse__Output } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';

let redis: TestRedis;
let router: RunningRouter;
let client: GenerateClient;
const workers = new Map<string, KcacheProcess>();

beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['mA', 'mB']) {
    // a model slow enough on one thread that the stream is still running when its worker dies
    const p = spawnKcache([
      'serve',
      'worker',
      '--model',
      'dummy:smol135:bf16',
      '--port',
      '0',
      '--redis-url',
      redis.url,
      '--id',
      id,
      '--num-blocks',
      '64',
      '--threads',
      '1',
      '--lease-ttl-ms',
      '1500',
    ]);
    await p.ready;
    workers.set(id, p);
  }
  router = await startRouter({ port: 0, redisUrl: redis.url, refreshMs: 100 });
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
  const ids = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37) % 500)));
  const request = { tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens: 48, ignoreEos: true } };
  const reference = await routed(client, request, 60_000);
  expect(reference.tokenIds).toHaveLength(48);
  // the same prompt again goes where its prefix is cached: that worker dies after the first token
  await new Promise((r) => setTimeout(r, 200));
  await router.syncIndex();
  const doomed = reference.workerId;

  const call = client.Generate(request, { deadline: Date.now() + 60_000 });
  const tokens: number[] = [];
  let final: GenerateResponse__Output['final'] | undefined;
  let killed = '';
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (m: GenerateResponse__Output) => {
      if (m.chunk) tokens.push(...(m.chunk.tokenIds ?? []));
      if (m.final) final = m.final;
      if (tokens.length >= 1 && !killed) {
        workers.get(doomed)?.proc.kill('SIGKILL');
        killed = doomed;
      }
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  await done;
  expect(killed).toMatch(/^m[AB]$/);
  expect(tokens).toEqual(reference.tokenIds);
  expect(final).toMatchObject({ finishReason: 'length', migrations: 1, usage: { promptTokens: 40, completionTokens: 48 } });
  expect(final?.workerId).not.toBe(killed);
  expect((await router.metrics.migrations.get()).values.reduce((n, v) => n + v.value, 0)).toBe(1);
}, 60_000);

test('SIGSTOP of the serving worker mid-stream: after the inter-token timeout the stream moves on, token-identical', async () => {
  // a third worker, so that two are alive; a router that gives a silent worker 800 ms
  const third = spawnKcache([
    'serve',
    'worker',
    '--model',
    'dummy:smol135:bf16',
    '--port',
    '0',
    '--redis-url',
    redis.url,
    '--id',
    'mC',
    '--num-blocks',
    '64',
    '--threads',
    '1',
    '--lease-ttl-ms',
    '1500',
  ]);
  await third.ready;
  workers.set('mC', third);
  const quick = await startRouter({ port: 0, redisUrl: redis.url, refreshMs: 100, interTokenTimeoutMs: 800 });
  const c = routerClient(quick.address);
  try {
    await quick.refresh();
    const ids = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 53) % 500)));
    const request = { tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens: 32, ignoreEos: true } };
    const reference = await routed(c, request, 60_000);
    await new Promise((r) => setTimeout(r, 200));
    await quick.syncIndex();
    const frozen = workers.get(reference.workerId) as KcacheProcess;
    const tokens: number[] = [];
    let final: GenerateResponse__Output['final'] | undefined;
    let stoppedAt = 0;
    let longestGap = 0;
    let last = 0;
    await new Promise<void>((resolve, reject) => {
      const call = c.Generate(request, { deadline: Date.now() + 60_000 });
      call.on('data', (m: GenerateResponse__Output) => {
        const now = performance.now();
        if (last) longestGap = Math.max(longestGap, now - last);
        last = now;
        if (m.chunk) tokens.push(...(m.chunk.tokenIds ?? []));
        if (m.final) final = m.final;
        if (tokens.length >= 1 && !stoppedAt) {
          frozen.proc.kill('SIGSTOP');
          stoppedAt = now;
        }
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
    expect(stoppedAt).toBeGreaterThan(0);
    expect(tokens).toEqual(reference.tokenIds);
    expect(final).toMatchObject({ finishReason: 'length', migrations: 1 });
    expect(final?.workerId).not.toBe(reference.workerId);
    // the stream waited for the timeout, not for the frozen worker (a loose bound: it is the 800 ms
    // timeout plus a prefill of 41 tokens elsewhere, far from the SIGSTOP's unbounded wait)
    expect(longestGap).toBeLessThan(10_000);
    expect((await quick.metrics.timeouts.get()).values.some((v) => v.labels.phase === 'between_tokens' && v.value > 0)).toBe(true);
  } finally {
    for (const p of workers.values()) p.proc.kill('SIGCONT');
    c.close();
    await quick.close();
  }
}, 90_000);

test('a worker drained with a short grace gives its stream up; the router resumes it elsewhere: nothing is truncated', async () => {
  const own = await startRedis();
  const drained: KcacheProcess[] = [];
  const r = await startRouter({ port: 0, redisUrl: own.url, refreshMs: 100 });
  const c = routerClient(r.address);
  try {
    for (const id of ['dA', 'dB']) {
      const p = spawnKcache([
        'serve',
        'worker',
        '--model',
        'dummy:smol135:bf16',
        '--port',
        '0',
        '--redis-url',
        own.url,
        '--id',
        id,
        '--num-blocks',
        '64',
        '--threads',
        '1',
        '--drain-grace-ms',
        '50',
      ]);
      await p.ready;
      drained.push(p);
    }
    await r.refresh();
    const ids = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 71) % 500)));
    const request = { tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens: 40, ignoreEos: true } };
    const reference = await routed(c, request, 60_000);
    await new Promise((res) => setTimeout(res, 200));
    await r.syncIndex();
    const serving = drained[reference.workerId === 'dA' ? 0 : 1] as KcacheProcess;
    const tokens: number[] = [];
    let final: GenerateResponse__Output['final'] | undefined;
    await new Promise<void>((resolve, reject) => {
      const call = c.Generate(request, { deadline: Date.now() + 60_000 });
      call.on('data', (m: GenerateResponse__Output) => {
        if (m.chunk) {
          if (tokens.length === 0) serving.proc.kill('SIGTERM');
          tokens.push(...(m.chunk.tokenIds ?? []));
        }
        if (m.final) final = m.final;
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
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
