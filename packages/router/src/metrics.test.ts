import { IDLE_LOAD } from '@kcache/protocol';
import { expect, test } from 'vitest';
import { RouterMetrics } from './metrics.js';
import { WorkerPool } from './pool.js';

const lease = (workerId: string) => ({
  workerId,
  address: '127.0.0.1:1',
  modelId: 'm',
  modelRef: 'm',
  blockSize: 16,
  maxModelLen: 512,
  maxRequests: 0,
  epoch: 1,
  instance: 'i1',
  writtenAt: 1,
  ttlMs: 0, // gone from Redis means gone

  load: IDLE_LOAD,
});
const sample = (text: string, name: string, worker: string) =>
  new RegExp(`${name}\\{[^}]*worker="${worker}"[^}]*\\} (\\d+)`).exec(text)?.[1];

test('per-worker gauges are read from the pool at scrape time: a closed breaker reads 0, a gone worker has no sample', async () => {
  const metrics = new RouterMetrics('r1');
  const pool = new WorkerPool('r1', { breakerThreshold: 1, breakerOpenMs: 60_000 });
  metrics.observe(pool);
  // every gauge has a sample from the start, and the process metrics are there
  let text = await metrics.registry.metrics();
  expect(text).toMatch(/kcache_router_redis_up\{[^}]*\} 0/);
  expect(text).toMatch(/kcache_router_live_workers\{[^}]*\} 0/);
  expect(text).toContain('process_resident_memory_bytes');
  expect(text).toContain('nodejs_eventloop_lag_seconds');
  expect(text).toMatch(/kcache_router_time_to_first_token_seconds_bucket\{le="2560"/);

  pool.sync([lease('w1'), lease('w2')]);
  const w1 = pool.get('w1');
  if (!w1) throw new Error('w1 missing');
  w1.breaker.failure(); // threshold 1: open
  w1.inFlight = 2;
  text = await metrics.registry.metrics();
  expect([sample(text, 'kcache_router_breaker_open', 'w1'), sample(text, 'kcache_router_breaker_open', 'w2')]).toEqual(['1', '0']);
  expect(sample(text, 'kcache_router_worker_load', 'w1')).toBe('2');
  w1.breaker.success();
  w1.inFlight = 0;
  pool.sync([lease('w1')]);
  text = await metrics.registry.metrics();
  expect(sample(text, 'kcache_router_breaker_open', 'w1')).toBe('0');
  expect(sample(text, 'kcache_router_worker_load', 'w1')).toBe('0');
  expect(sample(text, 'kcache_router_breaker_open', 'w2')).toBeUndefined();
  pool.close();
});
