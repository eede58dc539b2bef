// The BlockIndex contract, run against every implementation: memory, a private redis-server, and a
// private 3-master Redis Cluster. Then the Redis event consumer (single and cluster): applying live
// workers' streams, duplicates from several consumers, gap resync, purge of dead workers; and the
// Redis index's size at 1M blocks.
import {
  type BlockIndex,
  connectRedis,
  IndexConsumer,
  MemoryBlockIndex,
  RedisBlockIndex,
  type RedisClient,
  startRedisCluster,
  type TestRedisCluster,
} from '@kcache/block-index';
import { encodeKvEvent, encodeLease, IDLE_LOAD, type KvEventEntry, kvStreamKey, leaseKey, type Tier, WORKERS_SET } from '@kcache/protocol';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.js';

const ev = (seq: number, type: 'cleared' | 'stored' | 'removed', hashes: string[] = [], epoch = 1): KvEventEntry => ({
  seq,
  epoch,
  event:
    type === 'cleared' ? { type } : type === 'stored' ? { type, hashes, parent: null, tier: 'device' } : { type, hashes, tier: 'device' },
});

let single: TestRedis;
let cluster: TestRedisCluster;
beforeAll(async () => {
  [single, cluster] = await Promise.all([startRedis(), startRedisCluster(3)]);
});
afterAll(async () => {
  await Promise.all([single?.stop(), cluster?.stop()]);
});

const implementations: [string, () => BlockIndex][] = [
  ['memory', () => new MemoryBlockIndex()],
  ['Redis', () => new RedisBlockIndex(single.client)],
  ['Redis Cluster (3 masters)', () => new RedisBlockIndex(cluster.client)],
];

describe.each(implementations)('BlockIndex contract: %s', (_name, make) => {
  // worker ids are unique per implementation run: the two Redis suites share nothing, but a rerun must not see old keys
  const id = (w: string) => `${_name.split(' ')[0]}-${w}`;

  test('stored/removed/cleared events drive prefix matches per worker', async () => {
    const index = make();
    const [a, b, c] = [id('a'), id('b'), id('c')];
    expect(await index.apply(a, ev(1, 'cleared'))).toBe('ok');
    expect(await index.apply(a, ev(2, 'stored', ['h1', 'h2', 'h3']))).toBe('ok');
    expect(await index.apply(b, ev(1, 'cleared'))).toBe('ok');
    expect(await index.apply(b, ev(2, 'stored', ['h1', 'h3']))).toBe('ok');
    let m = await index.findMatches(['h1', 'h2', 'h3', 'h4'], [a, b, c]);
    expect([a, b, c].map((w) => m.get(w)?.matchedBlocks)).toEqual([3, 1, 0]);
    expect(m.get(a)?.deviceBlocks).toBe(3);
    expect(await index.apply(a, ev(3, 'removed', ['h2']))).toBe('ok');
    m = await index.findMatches(['h1', 'h2', 'h3'], [a, b]);
    expect(m.get(a)?.matchedBlocks).toBe(1);
    expect((await index.findMatches([], [a])).get(a)).toEqual({
      matchedBlocks: 0,
      deviceBlocks: 0,
      offloadRamBlocks: 0,
      offloadDiskBlocks: 0,
    });
    expect(await index.indexedWorkers()).toEqual(expect.arrayContaining([a, b]));
    expect(await index.apply(a, ev(4, 'cleared'))).toBe('ok');
    expect((await index.findMatches(['h1'], [a])).get(a)?.matchedBlocks).toBe(0);
    expect(await index.workerBlockCount(a)).toBe(0);
  });

  test('host-tier blocks count as matched but not device', async () => {
    const index = make();
    const w = id('tiers');
    await index.apply(w, ev(1, 'cleared'));
    await index.apply(w, { seq: 2, epoch: 1, event: { type: 'stored', hashes: ['t1', 't2'], parent: null, tier: 'host' } });
    await index.apply(w, ev(3, 'stored', ['t3']));
    expect((await index.findMatches(['t1', 't2', 't3'], [w])).get(w)).toEqual({
      matchedBlocks: 3,
      deviceBlocks: 1,
      offloadRamBlocks: 0,
      offloadDiskBlocks: 0,
    });
  });

  test('offload tiers: a block moves device -> offload_ram -> offload_disk, counted per tier; a snapshot carries every tier', async () => {
    const index = make();
    const w = id('offload');
    const at = (seq: number, type: 'stored' | 'removed', hashes: string[], tier: Tier): KvEventEntry => ({
      seq,
      epoch: 1,
      event: type === 'stored' ? { type, hashes, parent: null, tier } : { type, hashes, tier },
    });
    await index.apply(w, ev(1, 'cleared'));
    await index.apply(w, at(2, 'stored', ['o1', 'o2', 'o3', 'o4'], 'device'));
    // o2 and o3 evicted from the pool into RAM, then o3 from RAM to disk: removed, then stored in the next tier
    await index.apply(w, at(3, 'removed', ['o2', 'o3'], 'device'));
    await index.apply(w, at(4, 'stored', ['o2'], 'offload_ram'));
    await index.apply(w, at(5, 'stored', ['o3'], 'offload_ram'));
    await index.apply(w, at(6, 'removed', ['o3'], 'offload_ram'));
    await index.apply(w, at(7, 'stored', ['o3'], 'offload_disk'));
    const counts = (await index.findMatches(['o1', 'o2', 'o3', 'o4', 'o5'], [w])).get(w);
    expect(counts).toEqual({ matchedBlocks: 4, deviceBlocks: 2, offloadRamBlocks: 1, offloadDiskBlocks: 1 });
    // dropped from disk: the chain ends before it
    await index.apply(w, at(8, 'removed', ['o3'], 'offload_disk'));
    expect((await index.findMatches(['o1', 'o2', 'o3', 'o4'], [w])).get(w)?.matchedBlocks).toBe(2);
    await index.resync(w, {
      epoch: 1,
      seq: 20,
      tiers: [
        { tier: 'device', hashes: ['s1'] },
        { tier: 'offload_ram', hashes: ['s2', 's3'] },
        { tier: 'offload_disk', hashes: ['s4'] },
      ],
    });
    expect((await index.findMatches(['s1', 's2', 's3', 's4'], [w])).get(w)).toEqual({
      matchedBlocks: 4,
      deviceBlocks: 1,
      offloadRamBlocks: 2,
      offloadDiskBlocks: 1,
    });
    expect(await index.workerBlockCount(w)).toBe(4);
  });

  test('re-applied events are duplicates; a skipped seq is a gap; a new epoch starts with cleared', async () => {
    const index = make();
    const g = id('g');
    expect(await index.apply(g, ev(2, 'stored', ['x0']))).toBe('gap'); // nothing before: must start with cleared
    await index.apply(g, ev(1, 'cleared'));
    await index.apply(g, ev(2, 'stored', ['x1']));
    expect(await index.apply(g, ev(2, 'stored', ['x1']))).toBe('dup');
    expect(await index.apply(g, ev(4, 'stored', ['x3']))).toBe('gap');
    expect(await index.apply(g, ev(1, 'stored', ['y'], 2))).toBe('gap');
    expect(await index.apply(g, ev(1, 'cleared', [], 2))).toBe('ok');
    expect(await index.apply(g, ev(2, 'stored', ['z'], 1))).toBe('dup'); // an old epoch's straggler
    await index.resync(g, { epoch: 2, seq: 9, tiers: [{ tier: 'device', hashes: ['r1', 'r2'] }] });
    expect((await index.findMatches(['r1', 'r2'], [g])).get(g)?.matchedBlocks).toBe(2);
    expect((await index.findMatches(['x1'], [g])).get(g)?.matchedBlocks).toBe(0);
    expect(await index.apply(g, ev(10, 'stored', ['r3'], 2))).toBe('ok');
    expect(await index.workerBlockCount(g)).toBe(3);
  });

  test('a snapshot older than the events already applied (another router was faster) changes nothing', async () => {
    const index = make();
    const g = id('stale');
    await index.apply(g, ev(1, 'cleared'));
    await index.apply(g, ev(2, 'stored', ['a1']));
    await index.apply(g, ev(3, 'stored', ['a2']));
    // taken at seq 2, written after seq 3 was applied: must not erase a2 nor rewind the cursor
    await index.resync(g, { epoch: 1, seq: 2, tiers: [{ tier: 'device', hashes: ['a1'] }] });
    expect((await index.findMatches(['a1', 'a2'], [g])).get(g)?.matchedBlocks).toBe(2);
    expect(await index.apply(g, ev(4, 'stored', ['a3']))).toBe('ok');
    // a snapshot of a newer epoch, or a later seq, replaces what the index has
    await index.resync(g, { epoch: 2, seq: 1, tiers: [{ tier: 'device', hashes: ['b1'] }] });
    expect((await index.findMatches(['a1'], [g])).get(g)?.matchedBlocks).toBe(0);
    expect((await index.findMatches(['b1'], [g])).get(g)?.matchedBlocks).toBe(1);
  });

  test('removeWorker forgets every block of one worker and no other', async () => {
    const index = make();
    const [p, q] = [id('p'), id('q')];
    for (const w of [p, q]) {
      await index.apply(w, ev(1, 'cleared'));
      await index.apply(w, ev(2, 'stored', ['s1', 's2']));
    }
    expect(await index.removeWorker(p)).toBe(2);
    expect(await index.indexedWorkers()).not.toContain(p);
    const m = await index.findMatches(['s1', 's2'], [p, q]);
    expect([m.get(p)?.matchedBlocks, m.get(q)?.matchedBlocks]).toEqual([0, 2]);
  });
});

describe.each([
  ['Redis', () => ({ client: single.client as RedisClient, url: single.url })],
  ['Redis Cluster (3 masters)', () => ({ client: cluster.client as RedisClient, url: cluster.url })],
])('IndexConsumer on %s', (name, target) => {
  test('applies live workers streams, resyncs a gap, lets a second consumer skip, purges dead workers and their streams', async () => {
    const { client: r, url } = target();
    const index = new RedisBlockIndex(r);
    const pre = name.startsWith('Redis Cluster') ? 'c' : 's';
    const [live1, live2] = [`${pre}-live1`, `${pre}-live2`];
    const lease = async (w: string) => {
      await r.set(
        leaseKey(w),
        encodeLease({
          workerId: w,
          address: 'x',
          modelId: 'm',
          modelRef: 'm',
          blockSize: 16,
          maxModelLen: 512,
          maxRequests: 0,
          epoch: 7,
          instance: 'i7',
          writtenAt: Date.now(),
          ttlMs: 5000,
          load: IDLE_LOAD,
        }),
        'PX',
        5000,
      );
      await r.sadd(WORKERS_SET, w);
    };
    await lease(live1);
    await lease(live2);
    for (const e of [ev(1, 'cleared', [], 7), ev(2, 'stored', ['p1', 'p2'], 7), ev(3, 'stored', ['p3'], 7)])
      await r.xadd(kvStreamKey(live1), '*', ...encodeKvEvent(e));
    // live2's stream lost its first entries: the consumer must resync from the worker
    await r.xadd(kvStreamKey(live2), '*', ...encodeKvEvent(ev(5, 'stored', ['q9'], 7)));
    const resyncs: string[] = [];
    const reader = connectRedis(url);
    const consumer = new IndexConsumer(index, r, reader, async (l) => {
      resyncs.push(l.workerId);
      return { epoch: 7, seq: 5, tiers: [{ tier: 'device', hashes: ['q1', 'q9'] }] };
    });
    await consumer.poll();
    expect(consumer.stats.gaps).toBe(1);
    expect(resyncs).toEqual([live2]);
    expect((await index.findMatches(['p1', 'p2', 'p3'], [live1])).get(live1)?.matchedBlocks).toBe(3);
    expect((await index.findMatches(['q1', 'q9'], [live2])).get(live2)?.matchedBlocks).toBe(2);
    // a second consumer sees everything as already applied
    const reader2 = connectRedis(url);
    const second = new IndexConsumer(new RedisBlockIndex(r), r, reader2, async () => ({
      epoch: 7,
      seq: 5,
      tiers: [{ tier: 'device', hashes: ['q1', 'q9'] }],
    }));
    await second.poll();
    expect(second.stats.applied).toBe(0);
    // live1's lease expires: its blocks and its stream leave Redis
    await r.del(leaseKey(live1));
    await consumer.poll();
    expect((await index.findMatches(['p1'], [live1])).get(live1)?.matchedBlocks).toBe(0);
    expect(await index.workerBlockCount(live1)).toBe(0);
    expect(await r.exists(kvStreamKey(live1))).toBe(0);
    expect(await r.sismember(WORKERS_SET, live1)).toBe(0);
    reader.disconnect();
    reader2.disconnect();
  });
});

test('1M indexed blocks on one Redis: bounded bytes per block and fast lookups', async () => {
  const r = single.client;
  const index = new RedisBlockIndex(r);
  const before = Number((await r.info('memory')).match(/used_memory:(\d+)/)?.[1]);
  const N = 1_000_000;
  const workers = ['m0', 'm1', 'm2', 'm3'];
  for (const w of workers) await index.apply(w, ev(1, 'cleared'));
  const seqs = new Map(workers.map((w) => [w, 1]));
  const batch = 2000;
  for (let start = 0; start < N; start += batch * 8) {
    await Promise.all(
      Array.from({ length: 8 }, (_, j) => {
        if (start + j * batch >= N) return null;
        const w = workers[(start / batch + j) % workers.length] as string;
        const seq = (seqs.get(w) as number) + 1;
        seqs.set(w, seq);
        const hashes = Array.from({ length: batch }, (_, i) => (start + j * batch + i).toString(16).padStart(16, '0'));
        return index.apply(w, ev(seq, 'stored', hashes));
      }),
    );
  }
  const after = Number((await r.info('memory')).match(/used_memory:(\d+)/)?.[1]);
  const perBlock = (after - before) / N;
  expect(perBlock).toBeLessThan(150); // measured: see docs/BENCHMARKS.md
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) {
    const first = (i * 4001) % (N - 64);
    const m = await index.findMatches(
      Array.from({ length: 64 }, (_, k) => (first + k).toString(16).padStart(16, '0')),
      workers,
    );
    expect([...m.values()].reduce((n, x) => n + x.matchedBlocks, 0)).toBeGreaterThan(0);
  }
  const msPerLookup = (performance.now() - t0) / 200;
  expect(msPerLookup).toBeLessThan(50); // a loose bound: latency is reported by the benchmark, not asserted
  process.stdout.write(
    `block index: ${perBlock.toFixed(1)} bytes/block at 1M blocks, ${msPerLookup.toFixed(2)} ms per 64-block lookup over 4 workers\n`,
  );
  for (const w of workers) await index.removeWorker(w);
}, 120_000);
