// Offload tiers below the KV pool (issue #19), through a real worker over gRPC with a private
// Redis: a prefix evicted from the pool is served from host RAM, then from disk, with the greedy
// tokens of computing it; a corrupt disk block is recomputed; the KV events move blocks between
// tiers in the index; tier capacities hold under load.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { MemoryBlockIndex } from '@kcache/block-index';
import { type AttentionMode, Engine, generate as offline } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { decodeKvEvent, kvStreamKey, promptBlockHashes, type WorkerClient } from '@kcache/protocol';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { runKcache, spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';
import { generate, unary, workerClient } from './helpers/worker-client.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

const GREEDY = { temperature: 0 };
const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));

describe.each([
  { model: STORIES_260K, attention: 'full' as AttentionMode },
  { model: STORIES_260K, attention: 'kcache' as AttentionMode },
  { model: 'dummy:tiny', attention: 'full' as AttentionMode },
])('offload tiers: $model, $attention attention', ({ model, attention }) => {
  let w: RunningWorker;
  let client: WorkerClient;
  let bytesPerBlock: number;
  let cold: number[];
  const P = prompt(81, 7); // 5 cacheable blocks of 16 (the last token is always computed)
  const hashesOf = (ids: number[]) => promptBlockHashes(ids, 16, { modelId: w.engine.model.id, cacheSalt: '' });
  const run = (ids: number[], id: string) =>
    generate(client, { requestId: id, tokenIds: ids, sampling: GREEDY, stop: { maxTokens: 12, ignoreEos: true } });
  let filler = 100;
  /** Distinct prompts until every block of `ids` has left the pool and sits in `tier` (on the way they are split between tiers). */
  async function pushDown(ids: number[], tier: 'offload_ram' | 'offload_disk') {
    for (let i = 0; i < 40 && !hashesOf(ids).every((h) => w.offload?.tierOf(h) === tier); i++) {
      await run(prompt(81, filler++), `fill-${filler}`);
    }
    expect(hashesOf(ids).map((h) => w.offload?.tierOf(h))).toEqual(Array(5).fill(tier));
  }

  beforeAll(async () => {
    const kcache = attention === 'kcache' ? { topN: 8, fullLayers: 1 } : undefined;
    const probe = await Engine.load(resolveModel(model), { numBlocks: 12, threads: 1, kvDtype: 'auto', attention, kcache });
    bytesPerBlock = probe.info().kvBytesPerBlock;
    cold = (await offline(probe, { promptIds: P, maxTokens: 12, sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 }, ignoreEos: true }))
      .tokenIds;
    probe.dispose();
    w = await startWorker({
      model,
      port: 0,
      redisUrl: redis.url,
      workerId: `w-offload-${attention}-${model.length}`,
      numBlocks: 12,
      threads: 1,
      attention,
      kcache,
      offloadBytes: 16 * bytesPerBlock,
      offloadDir: tempDir('kc-offload-'),
      offloadDiskBytes: 32 * bytesPerBlock,
    });
    client = workerClient(w.address);
  });
  afterAll(async () => {
    client?.close();
    await w?.close();
  });

  test('computed, from the pool, from RAM, from disk: the same greedy tokens; a corrupt disk block is recomputed', async () => {
    const computed = await run(P, 'p0');
    expect(computed.usage.cachedTokens).toBe(0);
    expect(computed.tokenIds).toEqual(cold);
    const pooled = await run(P, 'p1');
    expect(pooled.usage.cachedTokens).toBe(80);
    expect(pooled.tokenIds).toEqual(cold);

    await pushDown(P, 'offload_ram');
    const ram = await run(P, 'p2');
    expect(ram.usage.cachedTokens).toBe(80);
    expect(ram.tokenIds).toEqual(cold);
    expect(w.offload?.counters.reloaded.offload_ram).toBeGreaterThanOrEqual(5);
    // reloaded blocks are pool blocks again
    expect(w.blocks.lookup(hashesOf(P))).toHaveLength(5);

    await pushDown(P, 'offload_disk');
    const disk = await run(P, 'p3');
    expect(disk.usage.cachedTokens).toBe(80);
    expect(disk.tokenIds).toEqual(cold);
    expect(w.offload?.counters.reloaded.offload_disk).toBeGreaterThanOrEqual(5);

    await pushDown(P, 'offload_disk');
    const file = w.offload?.diskFile(hashesOf(P)[2] as string) as string;
    const bytes = readFileSync(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0x01, bytes.length - 100); // one bit of the data
    writeFileSync(file, bytes);
    const corrupt = await run(P, 'p4');
    expect(corrupt.usage.cachedTokens).toBe(32); // blocks 0 and 1 reloaded, block 2 failed its check: computed from there
    expect(corrupt.tokenIds).toEqual(cold);
    expect(w.offload?.counters.corrupt).toBe(1);
    const metrics = await w.metrics.registry.metrics();
    expect(metrics).toMatch(/kcache_offload_reloaded_blocks_total\{[^}]*tier="offload_ram"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/kcache_offload_corrupt_blocks_total\{[^}]*\} 1/);
    expect(metrics).toMatch(/kcache_prefix_cache_hits_by_tier_total\{[^}]*tier="offload_disk"[^}]*\} [1-9]/);
  });

  test('tier capacities hold under concurrent load; the KV events and Snapshot place every block in one tier', async () => {
    await Promise.all(Array.from({ length: 10 }, (_, i) => run(prompt(81, 500 + i), `load-${i}`)));
    const stats = w.offload?.stats();
    expect(stats?.offload_ram.blocks).toBe(16); // more blocks were evicted than RAM holds
    expect(stats?.offload_disk.blocks).toBeLessThanOrEqual(32);
    expect(w.offload?.counters.dropped).toBeGreaterThan(0); // and than both hold
    // replay the worker's whole event stream into an index: it agrees with the worker's own account
    const index = new MemoryBlockIndex();
    for (const [, fields] of await redis.client.xrange(kvStreamKey(w.workerId), '-', '+')) {
      const e = decodeKvEvent(fields);
      if (e) expect(await index.apply(w.workerId, e)).toBe('ok');
    }
    const snap = await unary<{ tiers: { tier: string; hashes: string[] }[] }>(client, 'Snapshot', {});
    const poolTier = attention === 'kcache' ? 'host' : 'device';
    expect(snap.tiers.map((t) => t.tier)).toEqual([poolTier, 'offload_ram', 'offload_disk']);
    expect(snap.tiers[1]?.hashes).toHaveLength(stats?.offload_ram.blocks as number);
    expect(snap.tiers[2]?.hashes).toHaveLength(stats?.offload_disk.blocks as number);
    const all = snap.tiers.flatMap((t) => t.hashes);
    expect(new Set(all).size).toBe(all.length); // exclusive tiers
    expect(await index.workerBlockCount(w.workerId)).toBe(all.length);
    for (const t of snap.tiers) {
      const m = (await index.findMatches(t.hashes.slice(0, 1), [w.workerId])).get(w.workerId);
      expect(m?.matchedBlocks).toBe(1);
      if (t.tier === 'offload_ram') expect(m?.offloadRamBlocks).toBe(1);
      if (t.tier === 'offload_disk') expect(m?.offloadDiskBlocks).toBe(1);
    }
    const info = await unary<{ tiers: { tier: string; numBlocks: number }[] }>(client, 'Info', {});
    expect(info.tiers.filter((t) => t.tier.startsWith('offload'))).toEqual([
      { tier: 'offload_ram', numBlocks: 16, bytesPerBlock },
      { tier: 'offload_disk', numBlocks: 32, bytesPerBlock },
    ]);
  });
});

describe('the offload flags of serve worker', () => {
  test('bad combinations are one line and exit 2', async () => {
    const base = ['serve', 'worker', '--model', 'dummy:tiny', '--port', '0'];
    const cases: [string[], string][] = [
      [
        ['--offload-bytes', 'lots'],
        "kcache: --offload-bytes must be a size in bytes (an integer, optionally with K, M, G or T), got 'lots'",
      ],
      [['--offload-dir', tempDir('kc-off-')], "kcache: --offload-dir needs --offload-disk-bytes N (the disk tier's capacity)"],
      [['--offload-disk-bytes', '1G'], 'kcache: --offload-disk-bytes needs --offload-dir DIR (where the disk tier keeps its blocks)'],
      [['--peer-fetch', 'maybe'], "kcache: --peer-fetch must be on or off, got 'maybe'"],
    ];
    for (const [flags, line] of cases) {
      const r = await runKcache(...base, ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toBe(line);
    }
  }, 60_000);

  test('a worker started with the tiers reports them, and cleans its disk tier up on exit', async () => {
    const dir = tempDir('kc-off-cli-');
    const { proc, ready, exited } = spawnKcache([
      'serve',
      'worker',
      '--model',
      'dummy:tiny',
      '--port',
      '0',
      '--id',
      'cli-offload',
      '--offload-bytes',
      '1M',
      '--offload-dir',
      dir,
      '--offload-disk-bytes',
      '4MiB',
      '--peer-fetch',
      'off',
    ]);
    const line = (await ready) as { offloadBytes: number; offloadDiskBytes: number; peerFetch: boolean; address: string };
    expect(line).toMatchObject({ offloadBytes: 2 ** 20, offloadDiskBytes: 4 * 2 ** 20, peerFetch: false });
    const client = workerClient(line.address);
    const info = await unary<{ tiers: { tier: string; numBlocks: number }[] }>(client, 'Info', {});
    expect(info.tiers.map((t) => t.tier)).toEqual(['device', 'offload_ram', 'offload_disk']);
    expect(readdirSync(dir)).toEqual(['cli-offload']);
    client.close();
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  }, 60_000);
});
