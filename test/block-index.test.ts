// The Redis block index against a private redis-server: event application, prefix matches,
// duplicates from several consumers, gap detection and resync, purge of dead workers, and size.
import { IndexConsumer, RedisBlockIndex } from '@kcache/block-index';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.js';

let redis: TestRedis;
let index: RedisBlockIndex;
beforeAll(async () => {
  redis = await startRedis();
  index = new RedisBlockIndex(redis.client);
});
afterAll(async () => {
  await redis.stop();
});

const ev = (seq: number, type: string, hashes: string[] = [], epoch = 1) => ({
  seq: String(seq),
  epoch: String(epoch),
  type,
  hashes: hashes.join(','),
  tier: 'device',
});

describe('RedisBlockIndex', () => {
  test('stored/removed/cleared events drive prefix matches per worker', async () => {
    expect(await index.apply('a', ev(1, 'cleared'))).toBe('ok');
    expect(await index.apply('a', ev(2, 'stored', ['h1', 'h2', 'h3']))).toBe('ok');
    expect(await index.apply('b', ev(1, 'cleared'))).toBe('ok');
    expect(await index.apply('b', ev(2, 'stored', ['h1', 'h3']))).toBe('ok');
    let m = await index.findMatches(['h1', 'h2', 'h3', 'h4'], ['a', 'b', 'c']);
    expect(Object.fromEntries([...m].map(([w, r]) => [w, r.matchedBlocks]))).toEqual({ a: 3, b: 1, c: 0 });
    expect(m.get('a')?.deviceBlocks).toBe(3);
    expect(await index.apply('a', ev(3, 'removed', ['h2']))).toBe('ok');
    m = await index.findMatches(['h1', 'h2', 'h3'], ['a', 'b']);
    expect(m.get('a')?.matchedBlocks).toBe(1);
    expect(await index.apply('a', ev(4, 'cleared'))).toBe('ok');
    expect((await index.findMatches(['h1'], ['a'])).get('a')?.matchedBlocks).toBe(0);
    expect(await index.workerBlockCount('a')).toBe(0);
  });

  test('re-applied events are duplicates; a skipped seq is a gap; a new epoch starts with cleared', async () => {
    await index.apply('g', ev(1, 'cleared'));
    await index.apply('g', ev(2, 'stored', ['x1']));
    expect(await index.apply('g', ev(2, 'stored', ['x1']))).toBe('dup');
    expect(await index.apply('g', ev(4, 'stored', ['x3']))).toBe('gap');
    expect(await index.apply('g', ev(1, 'stored', ['y'], 2))).toBe('gap');
    expect(await index.apply('g', ev(1, 'cleared', [], 2))).toBe('ok');
    expect(await index.apply('g', ev(2, 'stored', ['z'], 1))).toBe('dup'); // an old epoch's straggler
    expect(await index.resync('g', { epoch: 2, seq: 9, tier: 'device', hashes: ['r1', 'r2'] })).toBe('ok');
    expect((await index.findMatches(['r1', 'r2'], ['g'])).get('g')?.matchedBlocks).toBe(2);
    expect(await index.apply('g', ev(10, 'stored', ['r3'], 2))).toBe('ok');
  });

  test('the consumer applies live workers streams, resyncs a gap and purges dead workers', async () => {
    const r = redis.client;
    const lease = (id: string) =>
      r
        .multi()
        .set(`kcache:worker:${id}`, JSON.stringify({ workerId: id, address: 'x', modelId: 'm', blockSize: 16, epoch: 7 }), 'PX', 5000)
        .sadd('kcache:workers', id)
        .exec();
    await lease('live1');
    await lease('live2');
    for (const e of [ev(1, 'cleared', [], 7), ev(2, 'stored', ['p1', 'p2'], 7), ev(3, 'stored', ['p3'], 7)])
      await r.xadd('kcache:kv:live1', '*', ...Object.entries(e).flat());
    // live2's stream lost its first entries: the consumer must resync from the worker
    await r.xadd('kcache:kv:live2', '*', ...Object.entries(ev(5, 'stored', ['q9'], 7)).flat());
    const resyncs: string[] = [];
    const reader = new Redis(redis.url);
    const consumer = new IndexConsumer(index, reader, async (l) => {
      resyncs.push(l.workerId);
      return { epoch: 7, seq: 5, tier: 'device', hashes: ['q1', 'q9'] };
    });
    await consumer.poll();
    expect(consumer.stats.gaps).toBe(1);
    expect(resyncs).toEqual(['live2']);
    const m = await index.findMatches(['p1', 'p2', 'p3'], ['live1']);
    expect(m.get('live1')?.matchedBlocks).toBe(3);
    expect((await index.findMatches(['q1', 'q9'], ['live2'])).get('live2')?.matchedBlocks).toBe(2);
    // a second consumer sees everything as already applied
    const reader2 = new Redis(redis.url);
    const second = new IndexConsumer(index, reader2, async () => ({ epoch: 7, seq: 5, tier: 'device', hashes: ['q1', 'q9'] }));
    await second.poll();
    expect(second.stats.applied).toBe(0);
    // live1's lease expires: its blocks leave the index
    await r.del('kcache:worker:live1');
    await consumer.poll();
    expect((await index.findMatches(['p1'], ['live1'])).get('live1')?.matchedBlocks).toBe(0);
    expect(await index.workerBlockCount('live1')).toBe(0);
    reader.disconnect();
    reader2.disconnect();
  });

  test('1M indexed blocks: bounded bytes per block and fast lookups', async () => {
    const r = redis.client;
    const before = Number((await r.info('memory')).match(/used_memory:(\d+)/)?.[1]);
    const N = 1_000_000;
    const workers = ['m0', 'm1', 'm2', 'm3'];
    for (const w of workers) await index.apply(w, ev(1, 'cleared'));
    const seqs = new Map(workers.map((w) => [w, 1]));
    const batch = 2000;
    for (let start = 0; start < N; start += batch * 8) {
      const p = r.pipeline();
      for (let j = 0; j < 8 && start + j * batch < N; j++) {
        const w = workers[(start / batch + j) % workers.length] as string;
        const seq = (seqs.get(w) as number) + 1;
        seqs.set(w, seq);
        const hashes = Array.from({ length: batch }, (_, i) => (start + j * batch + i).toString(16).padStart(16, '0'));
        (p as unknown as { kcApply(...a: string[]): void }).kcApply(
          `kcache:cursor:${w}`,
          `kcache:wblk:${w}`,
          w,
          '1',
          String(seq),
          'stored',
          'device',
          '0',
          ...hashes,
        );
      }
      await p.exec();
    }
    const after = Number((await r.info('memory')).match(/used_memory:(\d+)/)?.[1]);
    const perBlock = (after - before) / N;
    expect(perBlock).toBeLessThan(300); // measured: see docs/BENCHMARKS.md
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) {
      const first = (i * 4001) % (N - 64);
      await index.findMatches(
        Array.from({ length: 64 }, (_, k) => (first + k).toString(16).padStart(16, '0')),
        workers,
      );
    }
    const msPerLookup = (performance.now() - t0) / 200;
    expect(msPerLookup).toBeLessThan(50); // a loose bound: latency is reported by the benchmark, not asserted
    process.stdout.write(
      `block index: ${perBlock.toFixed(1)} bytes/block at 1M blocks, ${msPerLookup.toFixed(2)} ms per 64-block lookup over 4 workers\n`,
    );
  }, 120_000);
});
