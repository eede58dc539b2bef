import { IDLE_LOAD, type WorkerLease } from '@kcache/protocol';
import { expect, test } from 'vitest';
import { BACKGROUND_LOAD_WEIGHT, WorkerPool } from './pool.js';

const lease = (workerId: string, load: Partial<WorkerLease['load']> = {}, epoch = 1, modelId = 'm', writtenAt = 1): WorkerLease => ({
  workerId,
  address: '127.0.0.1:1',
  modelId,
  modelRef: modelId,
  blockSize: 16,
  maxModelLen: 512,
  maxRequests: 0,
  epoch,
  instance: 'i1',
  writtenAt,
  ttlMs: 0, // gone from Redis means gone, unless a test says otherwise
  load: { ...IDLE_LOAD, numBlocks: 100, ...load },
});

test("load: this router's own in-flight requests, plus the others' from the worker's report", () => {
  const pool = new WorkerPool('r1');
  pool.sync([
    lease('w1', { running: 3, waiting: 2, byRouter: { r2: 4 } }),
    // a stale report still counting 3 of r1's requests that have since finished
    lease('w2', { running: 4, byRouter: { r1: 3, r2: 1 } }),
    lease('x', {}, 1, 'other'),
  ]);
  const w2 = pool.get('w2');
  if (!w2) throw new Error('w2 missing');
  w2.inFlight = 1;
  expect(pool.candidates('m')).toEqual([
    { id: 'w1', load: 5, cachedBlocks: 0, numBlocks: 100 },
    { id: 'w2', load: 2, cachedBlocks: 0, numBlocks: 100 },
  ]);
  pool.close();
});

test('an interactive request weighs background work (batch jobs) lightly; a background request counts it in full', () => {
  const pool = new WorkerPool('r1');
  pool.sync([
    // 6 requests, 4 of them background: r1's 2 (1 background), r2's 4 (3 background)
    lease('w1', { running: 5, waiting: 1, byRouter: { r1: 2, r2: 4 }, background: 4, backgroundByRouter: { r1: 1, r2: 3 } }),
    // a stale report still counting 2 of r1's background requests that have since finished
    lease('w2', { running: 2, byRouter: { r1: 2 }, background: 2, backgroundByRouter: { r1: 2 } }),
  ]);
  const w1 = pool.get('w1');
  const w2 = pool.get('w2');
  if (!w1 || !w2) throw new Error('worker missing');
  w1.inFlight = 2; // one interactive, one background
  w1.inFlightBackground = 1;
  w2.inFlight = 3; // all background
  w2.inFlightBackground = 3;
  const loads = (priority?: number) => pool.candidates('m', priority).map((c) => c.load);
  // w1: own 2 + others' 4 (6 - r1's 2), of which background: own 1 + others' 3 (4 - r1's 1)
  const [a, b] = loads();
  expect(a).toBeCloseTo(2 + 4 * BACKGROUND_LOAD_WEIGHT);
  expect(b).toBeCloseTo(3 * BACKGROUND_LOAD_WEIGHT);
  expect(loads(0)).toEqual(loads());
  expect(loads(2)).toEqual([6, 3]);
  // the worker's figures cannot make the background share exceed the load it reports
  pool.sync([lease('w2', { running: 1, byRouter: {}, background: 9, backgroundByRouter: {} })]);
  w2.inFlight = 0;
  w2.inFlightBackground = 0;
  expect(pool.candidates('m').find((c) => c.id === 'w2')?.load).toBeCloseTo(BACKGROUND_LOAD_WEIGHT);
  pool.close();
});

test('occupancy: the reported cached blocks plus what this router sent since the report, at most the pool', () => {
  const pool = new WorkerPool('r1');
  pool.sync([lease('w1', { cachedBlocks: 10 }), lease('w2', { cachedBlocks: 10 })]);
  (pool.get('w1') as { routedBlocks: number }).routedBlocks = 5;
  (pool.get('w2') as { routedBlocks: number }).routedBlocks = 500;
  expect(pool.candidates('m').map((x) => x.cachedBlocks)).toEqual([15, 100]);
  // the same report again changes nothing; a newer one already counts what was sent
  pool.sync([lease('w1', { cachedBlocks: 10 }), lease('w2', { cachedBlocks: 60 }, 1, 'm', 2)]);
  expect(pool.candidates('m').map((x) => x.cachedBlocks)).toEqual([15, 60]);
  pool.close();
});

test('sync follows the leases: fresh load kept, a restart keeps the breaker and in-flight count, a vanished worker is forgotten', () => {
  const removed: string[] = [];
  const pool = new WorkerPool('r1', { breakerThreshold: 1, breakerOpenMs: 60_000, events: { removed: (id) => removed.push(id) } });
  pool.sync([lease('w1'), lease('w2')]);
  const w1 = pool.get('w1');
  if (!w1) throw new Error('w1 missing');
  w1.inFlight = 2;
  w1.breaker.failure(); // threshold 1: open
  pool.sync([lease('w1', { running: 7 }, 2)]);
  const again = pool.get('w1');
  expect(again?.client).not.toBe(w1.client); // a new epoch gets a new connection
  expect(again?.inFlight).toBe(2);
  expect(again?.breaker.state).toBe('open');
  expect(pool.candidates('m')).toEqual([]); // an open breaker takes no requests
  expect(removed).toEqual(['w2']);
  expect(pool.get('w2')).toBeUndefined();
  pool.close();
});

test('after a Redis restart a missing worker stays until its lease could really have expired; otherwise it goes at once', () => {
  let now = 1_000;
  const removed: string[] = [];
  const pool = new WorkerPool('r1', {
    breakerThreshold: 3,
    breakerOpenMs: 5_000,
    events: { removed: (id) => removed.push(id) },
    now: () => now,
  });
  const l = (id: string) => ({ ...lease(id), ttlMs: 2_000 });
  pool.sync([l('w1'), l('w2'), l('w3')], 'redis-a');
  now += 100;
  pool.sync([l('w1'), l('w2')], 'redis-a'); // w3's lease is gone from the same Redis: expired or deleted
  expect(removed).toEqual(['w3']);
  now += 1_400;
  pool.sync([l('w2')], 'redis-b'); // Redis restarted empty; only w2 has re-registered so far
  expect(pool.candidates('m').map((c) => c.id)).toEqual(['w1', 'w2']);
  now += 600; // 2.1 s since w1's lease was last seen: it could have expired
  pool.sync([l('w2')], 'redis-b');
  expect(pool.candidates('m').map((c) => c.id)).toEqual(['w2']);
  expect(removed).toEqual(['w3', 'w1']);
  pool.close();
});

test("saturated: every candidate has as many of this router's requests in flight as its lease limit; reports of others do not count", () => {
  const pool = new WorkerPool('r1');
  const limited = (id: string, load: Partial<WorkerLease['load']>, maxRequests: number) => ({ ...lease(id, load), maxRequests });
  // w1 reports itself full with another router's requests: that report may be stale, the worker decides
  pool.sync([limited('w1', { running: 4, waiting: 16, byRouter: { r2: 20 } }, 20), limited('w2', {}, 4)]);
  (pool.get('w2') as { inFlight: number }).inFlight = 4;
  expect(pool.atLimit('w1')).toBe(false);
  expect(pool.atLimit('w2')).toBe(true);
  expect(pool.saturated('m')).toBe(false);
  (pool.get('w1') as { inFlight: number }).inFlight = 20;
  expect(pool.saturated('m')).toBe(true);
  expect(pool.saturated('other')).toBe(false); // no worker at all: not "full"
  pool.sync([limited('w1', {}, 20), limited('w2', {}, 0)]);
  expect(pool.saturated('m')).toBe(false); // w2's limit unknown
  pool.close();
});
