// The cluster-wide KV cache (issue #19), three parts of `kcache bench routing`:
//   reload:  one worker; a prompt's time to first token when its prefix is computed, in the pool,
//            in the host-RAM tier and in the disk tier (the routing credits come from these);
//   offload: the Mooncake trace replayed through cache_aware with offload tiers off and on, at the
//            same device pools, against one unbounded cache;
//   spill:   requests of a hot prefix that the balance guard sends to the idle worker, with peer
//            fetch off and on.
// Every figure is a ratio of two runs of this process on the same machine.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { promptBlockHashes, protos } from '@kcache/protocol';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { cluster, type Generating, generateClient, type Outcome, pct, replay, send, summarize } from './routing-bench.js';
import type { BenchRequest } from './workloads.js';

/** The worker's own Generate (Worker service): the same stream messages as the router's. */
const workerClient = (w: RunningWorker): Generating =>
  new (protos().v1.Worker)(w.address, grpc.credentials.createInsecure()) as unknown as Generating;

/** A distinct prompt: BOS, then tokens from a seeded generator. */
function distinctPrompt(tokens: number, seed: number, vocab: number): number[] {
  let x = (seed * 2654435761) >>> 0 || 1;
  return [
    1,
    ...Array.from({ length: tokens - 1 }, () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return 3 + ((x >>> 0) % (vocab - 3));
    }),
  ];
}

async function bytesPerBlock(model: string): Promise<number> {
  const e = await Engine.load(resolveModel(model), { numBlocks: 1, threads: 1, kvDtype: 'auto' });
  const b = e.info().kvBytesPerBlock;
  e.dispose();
  return b;
}

export interface ReloadResult {
  model: string;
  promptTokens: number;
  reps: number;
  /** Median TTFT (ms) per place the prefix came from. */
  computed: number;
  pooled: number;
  ram: number;
  disk: number;
  /** Prompt tokens served from cache in each case (checks the path taken). */
  cached: { pooled: number; ram: number; disk: number };
}

export async function measureReload(o: {
  model: string;
  threads: number;
  promptTokens: number;
  reps: number;
  log: (l: string) => void;
}): Promise<ReloadResult> {
  const vocab = resolveModel(o.model).config.vocabSize;
  const perRequest = Math.ceil((o.promptTokens + 1) / 16);
  const bpb = await bytesPerBlock(o.model);
  const dir = mkdtempSync(join(tmpdir(), 'kcache-bench-offload-'));
  const w = await startWorker({
    model: o.model,
    port: 0,
    redisUrl: null,
    workerId: 'reload',
    numBlocks: 2 * perRequest + 2,
    threads: o.threads,
    offloadBytes: 3 * perRequest * bpb,
    offloadDir: dir,
    offloadDiskBytes: 8 * perRequest * bpb,
    peerFetch: false,
  });
  const client = workerClient(w);
  const req = (ids: number[]) => ({ tokenIds: ids, sampling: { temperature: 0 }, stop: { maxTokens: 1, ignoreEos: true } });
  let filler = 1000;
  const pushDown = async (ids: number[], tier: 'offload_ram' | 'offload_disk') => {
    const hashes = promptBlockHashes(ids, 16, { modelId: w.engine.model.id, cacheSalt: '' });
    for (let i = 0; i < 30 && !hashes.every((h) => w.offload?.tierOf(h) === tier); i++)
      await send(client, req(distinctPrompt(o.promptTokens, filler++, vocab)));
    if (!hashes.every((h) => w.offload?.tierOf(h) === tier)) throw new Error(`reload bench: the prompt did not reach ${tier}`);
  };
  const runs: { computed: Outcome; pooled: Outcome; ram: Outcome; disk: Outcome }[] = [];
  try {
    await send(client, req(distinctPrompt(o.promptTokens, 999, vocab))); // warm-up
    for (let r = 0; r < o.reps; r++) {
      const p = distinctPrompt(o.promptTokens, r + 1, vocab);
      const computed = await send(client, req(p));
      const pooled = await send(client, req(p));
      await pushDown(p, 'offload_ram');
      const ram = await send(client, req(p));
      await pushDown(p, 'offload_disk');
      const disk = await send(client, req(p));
      runs.push({ computed, pooled, ram, disk });
      o.log(
        `  reload ${r + 1}/${o.reps}: computed ${computed.ttft.toFixed(0)} ms, pooled ${pooled.ttft.toFixed(0)} ms, RAM ${ram.ttft.toFixed(0)} ms, disk ${disk.ttft.toFixed(0)} ms`,
      );
    }
  } finally {
    client.close();
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (k: keyof (typeof runs)[number]) =>
    pct(
      runs.map((x) => x[k].ttft),
      50,
    );
  return {
    model: o.model,
    promptTokens: o.promptTokens,
    reps: o.reps,
    computed: med('computed'),
    pooled: med('pooled'),
    ram: med('ram'),
    disk: med('disk'),
    cached: {
      pooled: runs[0]?.pooled.cachedTokens ?? 0,
      ram: runs[0]?.ram.cachedTokens ?? 0,
      disk: runs[0]?.disk.cachedTokens ?? 0,
    },
  };
}

/** What a cached token in a tier saves of its prefill: 1 - (its TTFT over the pool's) / (computing's over the pool's). */
export function tierCredit(r: ReloadResult, tier: 'ram' | 'disk'): number {
  return Math.max(0, Math.min(1, 1 - (r[tier] - r.pooled) / Math.max(1e-9, r.computed - r.pooled)));
}

export function formatReload(r: ReloadResult): string {
  const row = (name: string, ms: number, cached: string) => `| ${name} | ${ms.toFixed(0)} | ${(ms / r.computed).toFixed(2)}× | ${cached} |`;
  return [
    `### reload from an offload tier against recomputing (${r.model}, ${r.promptTokens}-token prompts, median of ${r.reps})`,
    '',
    '| prefix comes from | TTFT ms | vs computing | cached tokens |',
    '|---|---:|---:|---:|',
    row('computed (prefill)', r.computed, '0'),
    row('the device pool', r.pooled, String(r.cached.pooled)),
    row('host-RAM tier', r.ram, String(r.cached.ram)),
    row('disk tier', r.disk, String(r.cached.disk)),
    '',
    `routing credit (1 - reload / prefill, per cached token): RAM ${tierCredit(r, 'ram').toFixed(2)}, disk ${tierCredit(r, 'disk').toFixed(2)}`,
  ].join('\n');
}

export interface OffloadReplayResult {
  workload: string;
  model: string;
  workers: number;
  numBlocks: number;
  distinctBlocks: number;
  oracle: number;
  runs: { offloadBlocks: number; hitRate: number; ttftP50: number; ttftP99: number; failed: number }[];
}

/** The trace through cache_aware twice, at the same device pools: offload tiers off, then a RAM tier `hostMultiple` times each pool. */
export async function measureOffloadReplay(o: {
  model: string;
  workers: number;
  numBlocks: number | null;
  threads: number;
  hostMultiple: number;
  workload: { name: string; requests: BenchRequest[] };
  oracle: number;
  log: (l: string) => void;
}): Promise<OffloadReplayResult> {
  const distinct = new Set(o.workload.requests.flatMap((r) => promptBlockHashes(r.tokenIds, 16, { modelId: 'oracle' }))).size;
  // by default the pools together hold a quarter of the distinct blocks (the issue's setting)
  const numBlocks = o.numBlocks ?? Math.max(16, Math.ceil(distinct / 4 / o.workers));
  const bpb = await bytesPerBlock(o.model);
  const result: OffloadReplayResult = {
    workload: o.workload.name,
    model: o.model,
    workers: o.workers,
    numBlocks,
    distinctBlocks: distinct,
    oracle: o.oracle,
    runs: [],
  };
  for (const offloadBlocks of [0, o.hostMultiple * numBlocks]) {
    o.log(`offload replay: ${o.workers} workers x ${numBlocks} blocks, offload RAM ${offloadBlocks} blocks each ...`);
    const c = await cluster({ model: o.model, workers: o.workers, numBlocks, threads: o.threads }, 'cache_aware', {
      offloadBytes: offloadBlocks * bpb,
      peerFetch: false,
    });
    const out = await replay(c.routers, o.workload.requests);
    await c.close();
    result.runs.push({ offloadBlocks, ...summarize(out) });
  }
  return result;
}

export function formatOffloadReplay(r: OffloadReplayResult): string {
  return [
    `### ${r.workload}: offload tiers off and on (${r.model}, ${r.workers} workers x ${r.numBlocks} device blocks; ${r.distinctBlocks} distinct blocks in the window)`,
    '',
    '| host-RAM tier per worker | cache hit rate | hit / unbounded cache | TTFT p50 ms | TTFT p99 ms | failed |',
    '|---|---:|---:|---:|---:|---:|',
    ...r.runs.map(
      (x) =>
        `| ${x.offloadBlocks === 0 ? 'off' : `${x.offloadBlocks} blocks (${x.offloadBlocks / r.numBlocks}× the pool)`} | ${(100 * x.hitRate).toFixed(1)}% | ${((100 * x.hitRate) / r.oracle).toFixed(0)}% | ${x.ttftP50.toFixed(0)} | ${x.ttftP99.toFixed(0)} | ${x.failed} |`,
    ),
    '',
    `one unbounded cache: ${(100 * r.oracle).toFixed(1)}%`,
  ].join('\n');
}

export interface SpillResult {
  model: string;
  prefixTokens: number;
  runs: { peerFetch: boolean; ttfts: number[]; cached: number[]; spilled: number; total: number }[];
}

/**
 * Two workers; for each of `prefixes` hot prefixes: one request places it on a worker, `loaders`
 * long requests of it keep that worker busy, then one more request of it goes past the balance
 * guard to the idle worker: its time to first token is measured (peer fetch off, then on).
 */
export async function measureSpill(o: {
  model: string;
  threads: number;
  prefixes: number;
  prefixTokens: number;
  loaders: number;
  log: (l: string) => void;
}): Promise<SpillResult> {
  const vocab = resolveModel(o.model).config.vocabSize;
  const perRequest = Math.ceil((o.prefixTokens + 64) / 16);
  const result: SpillResult = { model: o.model, prefixTokens: o.prefixTokens, runs: [] };
  for (const peerFetch of [false, true]) {
    o.log(`spill: peer fetch ${peerFetch ? 'on' : 'off'} ...`);
    const c = await cluster({ model: o.model, workers: 2, numBlocks: (o.loaders + 4) * perRequest, threads: o.threads }, 'cache_aware', {
      peerFetch,
    });
    const router = generateClient(c.router.address);
    const ask = (ids: number[], maxTokens: number) =>
      send(router, { tokenIds: { ids }, sampling: { temperature: 0 }, stop: { maxTokens, ignoreEos: true } });
    const run = { peerFetch, ttfts: [] as number[], cached: [] as number[], spilled: 0, total: 0 };
    try {
      await ask(distinctPrompt(64, 4242, vocab), 1); // warm-up
      for (let k = 0; k < o.prefixes; k++) {
        const prefix = distinctPrompt(o.prefixTokens, 7000 + k, vocab);
        const placed = await ask([...prefix, 5], 1);
        await c.router.syncIndex();
        const loaders = Array.from({ length: o.loaders }, (_, i) => ask([...prefix, 10 + i], 48));
        await new Promise((r) => setTimeout(r, 20));
        const probe = await ask([...prefix, 9], 1);
        await Promise.all(loaders);
        run.total++;
        if (probe.workerId !== placed.workerId) {
          run.spilled++;
          run.ttfts.push(probe.ttft);
          run.cached.push(probe.cachedTokens);
        }
        o.log(
          `  prefix ${k + 1}/${o.prefixes}: placed on ${placed.workerId}, probe on ${probe.workerId}, TTFT ${probe.ttft.toFixed(0)} ms, cached ${probe.cachedTokens}`,
        );
      }
    } finally {
      router.close();
      await c.close();
    }
    result.runs.push(run);
  }
  return result;
}

export function formatSpill(r: SpillResult): string {
  const off = r.runs.find((x) => !x.peerFetch);
  const on = r.runs.find((x) => x.peerFetch);
  const p50 = (x?: SpillResult['runs'][number]) => (x?.ttfts.length ? pct(x.ttfts, 50) : Number.NaN);
  return [
    `### spilled requests of a hot prefix (${r.model}, ${r.prefixTokens}-token prefixes, 2 workers)`,
    '',
    '| peer fetch | spilled / requests | TTFT p50 ms (spilled) | cached tokens (spilled, median) |',
    '|---|---:|---:|---:|',
    ...r.runs.map(
      (x) =>
        `| ${x.peerFetch ? 'on' : 'off'} | ${x.spilled} / ${x.total} | ${p50(x).toFixed(0)} | ${x.cached.length ? pct(x.cached, 50) : '-'} |`,
    ),
    '',
    `TTFT p50 of spilled requests, peer fetch off over on: ${(p50(off) / p50(on)).toFixed(2)}×`,
  ].join('\n');
}
