/**
 * `kcache bench batch`: a batch of prompts in prefix groups on a `kcache up` cluster (its Redis,
 * router, workers and batch runner as processes), run in the cache-aware order and in file order
 * (completion time, prefix hit rate), and interactive TTFT (p50/p99) with no batch running
 * against with one running. Each batch's prefixes are new (salted), so neither order inherits
 * the other's cache.
 */
import { randomUUID } from 'node:crypto';
import { connectRedis } from '@kcache/block-index';
import { KcacheClient } from '@kcache/client';
import { type BatchInfo, type BatchOrder, batchStatus, cancelBatch, submitBatch } from '@kcache/jobs';
import { percentile } from './faults-bench.js';
import { startLocalCluster } from './local-cluster.js';

export interface BatchBenchOptions {
  cli: string;
  model: string;
  /** Requests of the batch, in `groups` prefix groups that take turns in the file. */
  requests: number;
  groups: number;
  /** Characters of each group's shared prefix (the byte tokenizer of dummy models: tokens). */
  prefixChars: number;
  /** KV blocks per worker (small: the cache holds a few prefixes, as a busy cluster's does). */
  numBlocks: number;
  /** The workers' background prefill cap per step (`serve worker --max-background-prefill-tokens`); unset: their default. */
  maxBackgroundPrefillTokens?: number;
  /** Interactive requests per TTFT measurement, one every 1000/ratePerS ms. */
  interactive: number;
  ratePerS: number;
  log: (line: string) => void;
}

export interface BatchBenchResult {
  orders: { order: BatchOrder; seconds: number; hitRate: number; groups: number }[];
  ttft: { without: { p50: number; p99: number }; with: { p50: number; p99: number } };
}

function batchText(o: BatchBenchOptions): string {
  const salt = randomUUID().slice(0, 8);
  const unit = 'Shared instructions for this group of questions; answer briefly and precisely. ';
  const lines: string[] = [];
  for (let n = 0; n < o.requests; n++) {
    const g = n % o.groups;
    const prefix = `[${salt} ${g}] ${unit.repeat(Math.ceil(o.prefixChars / unit.length))}`.slice(0, o.prefixChars);
    lines.push(
      JSON.stringify({
        custom_id: `r${n}`,
        method: 'POST',
        url: '/v1/completions',
        body: { prompt: `${prefix} Question ${n}?`, max_tokens: 8, temperature: 0, ignore_eos: true },
      }),
    );
  }
  return lines.join('\n');
}

export async function runBatchBench(o: BatchBenchOptions): Promise<BatchBenchResult> {
  const cap = o.maxBackgroundPrefillTokens === undefined ? [] : ['--max-background-prefill-tokens', String(o.maxBackgroundPrefillTokens)];
  const cluster = await startLocalCluster(o.cli, ['--workers', '2', '--model', o.model, '--num-blocks', String(o.numBlocks), ...cap]);
  const redisUrl = cluster.redisUrl;
  const redis = connectRedis(redisUrl, { maxRetriesPerRequest: null });
  const client = new KcacheClient(cluster.routers[0]?.address as string);
  const until = async (id: string, done: (b: BatchInfo) => boolean) => {
    for (;;) {
      const b = (await batchStatus(redis, id)) as BatchInfo;
      if (done(b)) return b;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    const orders: BatchBenchResult['orders'] = [];
    for (const order of ['cache', 'file'] as const) {
      o.log(`batch of ${o.requests} in ${order} order ...`);
      const t = performance.now();
      const b = await submitBatch(redis, batchText(o), { order });
      const done = await until(b.id, (x) => x.status === 'completed');
      orders.push({
        order,
        seconds: (performance.now() - t) / 1000,
        hitRate: done.usage.cachedTokens / Math.max(1, done.usage.promptTokens),
        groups: done.groups,
      });
    }
    // interactive requests: short, distinct prompts, paced
    const interactive = async () => {
      const ttfts: number[] = [];
      await Promise.all(
        Array.from({ length: o.interactive }, async (_, i) => {
          await new Promise((r) => setTimeout(r, (i * 1000) / o.ratePerS));
          const t = performance.now();
          let first = -1;
          for await (const e of client.stream({ text: `Interactive ${randomUUID()} question ${i}`, maxTokens: 8, ignoreEos: true })) {
            if (e.type === 'chunk' && first < 0) first = performance.now() - t;
          }
          ttfts.push(first);
        }),
      );
      return { p50: percentile(ttfts, 50), p99: percentile(ttfts, 99) };
    };
    o.log('interactive TTFT, no batch running ...');
    const without = await interactive();
    o.log('interactive TTFT, a batch running ...');
    const running = await submitBatch(redis, batchText({ ...o, requests: o.requests * 4 }), { order: 'cache', priority: 'low' });
    await until(running.id, (x) => x.counts.completed >= 4);
    const withBatch = await interactive();
    const still = (await batchStatus(redis, running.id)) as BatchInfo;
    if (still.status === 'completed') o.log('warning: the batch finished before the interactive requests did: raise --requests');
    await cancelBatch(redis, running.id);
    return { orders, ttft: { without, with: withBatch } };
  } finally {
    client.close();
    redis.disconnect();
    await cluster.stop();
  }
}

export function formatBatchBench(r: BatchBenchResult): string {
  const rows = r.orders.map((x) => `| ${x.order} | ${x.groups} | ${x.seconds.toFixed(1)} | ${(100 * x.hitRate).toFixed(1)}% |`);
  const cache = r.orders.find((x) => x.order === 'cache');
  const file = r.orders.find((x) => x.order === 'file');
  const t = r.ttft;
  return [
    '| order | groups | completion s | prefix hit rate |',
    '|---|---:|---:|---:|',
    ...rows,
    '',
    cache && file ? `cache-aware order: ${(file.seconds / cache.seconds).toFixed(2)}× faster than file order` : '',
    `interactive TTFT p50 / p99: ${t.without.p50.toFixed(1)} / ${t.without.p99.toFixed(1)} ms without a batch, ${t.with.p50.toFixed(1)} / ${t.with.p99.toFixed(1)} ms with one running (p99 ${(t.with.p99 / t.without.p99).toFixed(2)}×; target ≤ 1.5×)`,
  ].join('\n');
}
