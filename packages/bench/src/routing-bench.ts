// `kcache bench routing`: a local cluster (a private redis-server, one router, N workers on a
// dummy model) replays the same workloads once per routing policy, fresh caches each time, and
// reports TTFT, throughput and prefix-cache hit rate against an oracle; then the latency the
// router adds over calling a worker directly, and decisions per second with 1M indexed blocks.
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { RedisBlockIndex, type RedisClient, startRedis, startRedisCluster } from '@kcache/block-index';
import { type GenerateRequest, type GenerateResponse__Output, protos, type WorkerGenerateRequest } from '@kcache/protocol';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type CacheAwareConfig, makePolicy, type PolicyName } from '@kcache/routing';
import { type RunningWorker, startWorker, type WorkerOptions } from '@kcache/worker';
import { Cluster } from 'ioredis';
import { type LocalCluster, startLocalCluster } from './local-cluster.js';
import { type BenchRequest, oracleHitRate } from './workloads.js';

export interface RoutingBenchOptions {
  model: string;
  workers: number;
  /** Routers sharing the Redis (default 1); requests go to them in turn. */
  routers?: number;
  numBlocks: number;
  threads: number;
  policies: PolicyName[];
  workloads: { name: string; requests: BenchRequest[] }[];
  /**
   * The worker model of the overhead measurement (default dummy:tiny: its steps take well under a
   * millisecond, so what the two paths differ by is the router, not the engine's noise on a
   * shared machine).
   */
  overheadModel?: string;
  /** cache_aware settings (default the router's). */
  cacheAware?: Partial<CacheAwareConfig>;
  /** Which parts run (default all). */
  parts?: { workloads: boolean; overhead: boolean; decisions: boolean; http?: boolean };
  log: (line: string) => void;
  /** The kcache CLI's entry point (the HTTP part starts its cluster with `kcache up`). */
  cli?: string;
}

export interface PolicyResult {
  workload: string;
  policy: string;
  ttftP50: number;
  ttftP99: number;
  throughputReqs: number;
  hitRate: number;
  oracle: number;
  failed: number;
  /** Requests served by each worker, w0 first. */
  perWorker: number[];
}

/** The router's and the worker's Generate: the same stream messages, different requests. */
export type Generating = {
  Generate(r: GenerateRequest | WorkerGenerateRequest): grpc.ClientReadableStream<GenerateResponse__Output>;
} & grpc.Client;

export const generateClient = (address: string): Generating =>
  new (protos().v1.Generate)(address, grpc.credentials.createInsecure()) as unknown as Generating;

export interface Outcome {
  ttft: number;
  end: number;
  promptTokens: number;
  cachedTokens: number;
  workerId: string;
  ok: boolean;
}

export function send(client: Generating, req: GenerateRequest | WorkerGenerateRequest): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const call = client.Generate(req);
    let ttft = -1;
    let usage: { promptTokens?: number; cachedTokens?: number } = {};
    let workerId = '';
    call.on('data', (m: GenerateResponse__Output) => {
      if (m.chunk && ttft < 0) ttft = performance.now() - t0;
      if (m.final) {
        usage = m.final.usage ?? {};
        workerId = m.final.workerId ?? '';
      }
    });
    call.on('end', () =>
      resolve({
        ttft,
        end: performance.now(),
        promptTokens: usage.promptTokens ?? 0,
        cachedTokens: usage.cachedTokens ?? 0,
        workerId,
        ok: true,
      }),
    );
    call.on('error', () => resolve({ ttft, end: performance.now(), promptTokens: 0, cachedTokens: 0, workerId, ok: false }));
  });
}

/** A replay's served requests: TTFT p50/p99, cached over prompt tokens, and how many failed. */
export function summarize(out: readonly Outcome[]): { ttftP50: number; ttftP99: number; hitRate: number; failed: number } {
  const ok = out.filter((x) => x.ok);
  const ttfts = ok.map((x) => x.ttft);
  const prompt = ok.reduce((n, x) => n + x.promptTokens, 0);
  return {
    ttftP50: pct(ttfts, 50),
    ttftP99: pct(ttfts, 99),
    hitRate: ok.reduce((n, x) => n + x.cachedTokens, 0) / Math.max(1, prompt),
    failed: out.length - ok.length,
  };
}

export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

/** A private Redis, `o.workers` in-process workers (with `worker` settings on top) and the routers. */
export async function cluster(
  o: Pick<RoutingBenchOptions, 'model' | 'workers' | 'routers' | 'numBlocks' | 'threads' | 'cacheAware'>,
  policy: PolicyName,
  worker: Partial<WorkerOptions> = {},
) {
  const redis = await startRedis();
  const workers: RunningWorker[] = [];
  for (let i = 0; i < o.workers; i++) {
    workers.push(
      await startWorker({
        model: o.model,
        port: 0,
        redisUrl: redis.url,
        workerId: `w${i}`,
        numBlocks: o.numBlocks,
        threads: o.threads,
        maxBatchedTokens: 512,
        ...worker,
      }),
    );
  }
  const routers: RunningRouter[] = [];
  for (let i = 0; i < (o.routers ?? 1); i++) {
    const router = await startRouter({
      apiKeys: null,
      port: 0,
      redisUrl: redis.url,
      policy,
      refreshMs: 100,
      cacheAware: o.cacheAware,
      routerId: `r${i}`,
      httpPort: 0,
    });
    await router.refresh();
    routers.push(router);
  }
  return {
    redis,
    workers,
    router: routers[0] as RunningRouter,
    routers,
    async close() {
      for (const router of routers) await router.close();
      for (const w of workers) await w.close();
      await redis.stop();
    },
  };
}

/** Sends each request at its time, to the routers in turn. */
export async function replay(routers: RunningRouter[], requests: BenchRequest[]): Promise<Outcome[]> {
  const clients = routers.map((r) => generateClient(r.address));
  const start = performance.now();
  const outcomes = await Promise.all(
    requests.map(async (r, i) => {
      const wait = start + r.at - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      return send(clients[i % clients.length] as Generating, {
        tokenIds: { ids: r.tokenIds },
        sampling: { temperature: 0 },
        stop: { maxTokens: r.maxTokens, ignoreEos: true },
      });
    }),
  );
  for (const c of clients) c.close();
  return outcomes;
}

export async function runRoutingBench(o: RoutingBenchOptions): Promise<{
  results: PolicyResult[];
  overhead: Record<string, number>;
  decisions: Record<string, number>;
  clusterDecisions: Record<string, number>;
  http: Record<string, number>;
}> {
  const results: PolicyResult[] = [];
  const parts = o.parts ?? { workloads: true, overhead: true, decisions: true };
  for (const wl of parts.workloads ? o.workloads : []) {
    const oracle = oracleHitRate(wl.requests, 16);
    for (const policy of o.policies) {
      o.log(`${wl.name}: ${policy} ...`);
      const c = await cluster(o, policy);
      const t0 = performance.now();
      const out = await replay(c.routers, wl.requests);
      const wall = (Math.max(...out.map((x) => x.end)) - t0) / 1000;
      await c.close();
      const ok = out.filter((x) => x.ok);
      results.push({
        workload: wl.name,
        policy,
        ...summarize(out),
        throughputReqs: ok.length / wall,
        oracle,
        perWorker: c.workers.map((w) => ok.filter((x) => x.workerId === w.workerId).length),
      });
    }
  }
  o.log('router overhead ...');
  const overhead = parts.overhead ? await routerOverhead(o) : {};
  o.log('decisions with 1M indexed blocks ...');
  const decisions = parts.decisions ? await decisionRate('single') : {};
  o.log('decisions with 1M indexed blocks on a 3-master Redis Cluster ...');
  const clusterDecisions = parts.decisions ? await decisionRate('cluster') : {};
  o.log('HTTP (OpenAI API) against gRPC on the same router ...');
  const http = parts.http ? await httpOverhead(o) : {};
  return { results, overhead, decisions, clusterDecisions, http };
}

/**
 * 1000 1-token requests on a warm prefix, sequentially and interleaved, through the router and
 * straight to the worker, all in this process.
 */
async function routerOverhead(o: RoutingBenchOptions): Promise<Record<string, number>> {
  const c = await cluster({ ...o, workers: 1, model: o.overheadModel ?? 'dummy:tiny' }, 'cache_aware');
  const ids = [1, ...Array.from({ length: 63 }, (_, i) => 3 + ((i * 7) % 256))];
  const viaRouter = generateClient(c.router.address);
  const direct = new (protos().v1.Worker)(
    (c.workers[0] as RunningWorker).address,
    grpc.credentials.createInsecure(),
  ) as unknown as Generating;
  const req = { sampling: { temperature: 0 }, stop: { maxTokens: 1, ignoreEos: true } };
  await send(viaRouter, { tokenIds: { ids }, ...req });
  await c.router.syncIndex();
  const r: number[] = [];
  const d: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const a = await send(viaRouter, { tokenIds: { ids }, ...req });
    const b = await send(direct, { tokenIds: ids, ...req });
    r.push(a.ttft);
    d.push(b.ttft);
  }
  viaRouter.close();
  direct.close();
  await c.close();
  return { routerP50: pct(r, 50), routerP99: pct(r, 99), directP50: pct(d, 50), directP99: pct(d, 99) };
}

/**
 * The router's two front doors on one cluster: 1,000 1-token requests alternately through gRPC
 * and through HTTP (`POST /v1/completions`, not streamed, over keep-alive connections), then 32
 * concurrent streams of STREAM_TOKENS tokens each way (gRPC server streams against server-sent
 * events), a warm-up round then six alternating rounds, medians. The cluster is `kcache up`'s processes (its Redis, one router, one worker), the client this
 * process: each has its own event loop, as in a deployment.
 */
/** Tokens per stream in the HTTP part's throughput rounds (a round takes about a second). */
const STREAM_TOKENS = 1024;

async function httpOverhead(o: RoutingBenchOptions): Promise<Record<string, number>> {
  if (!o.cli) throw new Error('the HTTP part needs the kcache CLI to start its cluster (RoutingBenchOptions.cli)');
  const c = await startLocalCluster(o.cli, ['--workers', '1', '--model', o.overheadModel ?? 'dummy:tiny', '--threads', String(o.threads)]);
  const router = c.routers[0] as LocalCluster['routers'][number];
  const ids = [1, ...Array.from({ length: 63 }, (_, i) => 3 + ((i * 7) % 256))];
  const grpcClient = generateClient(router.address);
  const url = `${router.http}/v1/completions`;
  // node:http with keep-alive connections: as lean an HTTP client as grpc-js is a gRPC one, so the
  // comparison is of the router's two front doors (undici's fetch costs this process about 40%
  // more CPU per streamed token, on the two cores it shares with router and worker)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const post = (body: object, onText: (text: string) => void): Promise<void> =>
    new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request(
        url,
        { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
        (res) => {
          res.setEncoding('utf8');
          res.on('data', onText);
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  const one = async () => {
    const t = performance.now();
    let text = '';
    await post({ prompt: ids, max_tokens: 1, temperature: 0, ignore_eos: true }, (part) => {
      text += part;
    });
    JSON.parse(text);
    return performance.now() - t;
  };
  const req = { sampling: { temperature: 0 }, stop: { maxTokens: 1, ignoreEos: true } };
  await send(grpcClient, { tokenIds: { ids }, ...req });
  await one();
  await new Promise((r) => setTimeout(r, 500)); // the worker's KV events reach the router's index
  const g: number[] = [];
  const h: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const t = performance.now();
    await send(grpcClient, { tokenIds: { ids }, ...req });
    g.push(performance.now() - t);
    h.push(await one());
  }
  // streamed throughput: 32 at once, STREAM_TOKENS each, distinct prompts
  const streamIds = (k: number) => [1, ...Array.from({ length: 31 }, (_, i) => 3 + ((i * 13 + k * 7) % 256))];
  const tokensPerS = async (run: (k: number) => Promise<number>) => {
    const t = performance.now();
    const counts = await Promise.all(Array.from({ length: 32 }, (_, k) => run(k)));
    return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t) / 1000);
  };
  const viaGrpc = (k: number) =>
    new Promise<number>((resolve) => {
      let n = 0;
      const call = grpcClient.Generate({
        tokenIds: { ids: streamIds(k) },
        sampling: { temperature: 0 },
        stop: { maxTokens: STREAM_TOKENS, ignoreEos: true },
      });
      call.on('data', (m: GenerateResponse__Output) => {
        n += m.chunk?.tokenIds?.length ?? 0;
      });
      call.on('end', () => resolve(n));
      call.on('error', () => resolve(n));
    });
  const viaSse = async (k: number) => {
    let n = 0;
    let buf = '';
    await post(
      { prompt: streamIds(k), max_tokens: STREAM_TOKENS, temperature: 0, ignore_eos: true, stream: true, return_token_ids: true },
      (part) => {
        buf += part;
        let cut = buf.indexOf('\n\n');
        while (cut >= 0) {
          const line = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          if (line.startsWith('data: {')) n += (JSON.parse(line.slice(6)).choices?.[0]?.token_ids ?? []).length;
          cut = buf.indexOf('\n\n');
        }
      },
    );
    return n;
  };
  // alternate, six rounds each after a warm-up, and compare medians (on a shared, noisy machine
  // single rounds of a few tenths of a second swung by a third)
  await tokensPerS(viaGrpc);
  await tokensPerS(viaSse);
  const grpcTps: number[] = [];
  const sseTps: number[] = [];
  for (let i = 0; i < 6; i++) {
    grpcTps.push(await tokensPerS(viaGrpc));
    sseTps.push(await tokensPerS(viaSse));
    o.log(`  streams, round ${i + 1} of 6: gRPC ${grpcTps.at(-1)?.toFixed(0)} tok/s, SSE ${sseTps.at(-1)?.toFixed(0)} tok/s`);
  }
  grpcClient.close();
  agent.destroy();
  await c.stop();
  return {
    grpcP50: pct(g, 50),
    grpcP99: pct(g, 99),
    httpP50: pct(h, 50),
    httpP99: pct(h, 99),
    grpcTokensPerS: pct(grpcTps, 50),
    sseTokensPerS: pct(sseTps, 50),
  };
}

/**
 * Index lookups plus policy decisions per second over 1M indexed blocks and 4 workers, on one Redis
 * or on a 3-master Redis Cluster (both private, started here).
 */
async function decisionRate(where: 'single' | 'cluster'): Promise<Record<string, number>> {
  const server = where === 'single' ? await startRedis() : await startRedisCluster(3);
  const client: RedisClient = server.client;
  const index = new RedisBlockIndex(client);
  const workers = ['m0', 'm1', 'm2', 'm3'];
  const hex = (n: number) => n.toString(16).padStart(16, '0');
  const N = 1_000_000;
  const usedMemory = async () => {
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    const infos = await Promise.all(nodes.map((n) => n.info('memory')));
    return infos.reduce((sum, i) => sum + Number(i.match(/used_memory:(\d+)/)?.[1]), 0);
  };
  const before = await usedMemory();
  for (const w of workers) await index.apply(w, { seq: 1, epoch: 1, event: { type: 'cleared' } });
  const seqs = new Map(workers.map((w) => [w, 1]));
  for (let start = 0; start < N; start += 2000) {
    const w = workers[(start / 2000) % 4] as string;
    const seq = (seqs.get(w) as number) + 1;
    seqs.set(w, seq);
    const hashes = Array.from({ length: 2000 }, (_, i) => hex(start + i));
    await index.apply(w, { seq, epoch: 1, event: { type: 'stored', hashes, parent: null, tier: 'device' } });
  }
  const used = (await usedMemory()) - before;
  const policy = makePolicy('cache_aware');
  const decide = async (i: number) => {
    const first = (i * 4001) % (N - 64);
    const hashes = Array.from({ length: 64 }, (_, k) => hex(first + k));
    const m = await index.findMatches(hashes, workers);
    return policy(
      { workers: workers.map((id) => ({ id, load: 0, matchedBlocks: m.get(id)?.matchedBlocks ?? 0 })), blockSize: 16 },
      { blockHashes: hashes, promptTokens: 1024 },
    );
  };
  let t = performance.now();
  for (let i = 0; i < 2000; i++) await decide(i);
  const sequential = 2000 / ((performance.now() - t) / 1000);
  t = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async (_, k) => {
      for (let i = 0; i < 250; i++) await decide(k * 250 + i);
    }),
  );
  const concurrent = 4000 / ((performance.now() - t) / 1000);
  await server.stop();
  return { blocks: N, bytesPerBlock: used / N, sequentialPerSec: sequential, concurrent16PerSec: concurrent };
}

export function formatRoutingBench(r: Awaited<ReturnType<typeof runRoutingBench>>): string {
  const lines: string[] = [];
  for (const wl of [...new Set(r.results.map((x) => x.workload))]) {
    const rows = r.results.filter((x) => x.workload === wl);
    const rr = rows.find((x) => x.policy === 'round_robin');
    lines.push(
      `### ${wl}`,
      '',
      '| policy | TTFT p50 ms | TTFT p99 ms | requests/s | cache hit rate | hit / oracle | TTFT p50 vs round_robin | throughput vs round_robin | failed | requests per worker |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const x of rows) {
      lines.push(
        `| ${x.policy} | ${x.ttftP50.toFixed(0)} | ${x.ttftP99.toFixed(0)} | ${x.throughputReqs.toFixed(2)} | ${(100 * x.hitRate).toFixed(1)}% | ${((100 * x.hitRate) / x.oracle).toFixed(0)}% | ${rr ? `${(rr.ttftP50 / x.ttftP50).toFixed(2)}×` : ''} | ${rr ? `${(x.throughputReqs / rr.throughputReqs).toFixed(2)}×` : ''} | ${x.failed} | ${x.perWorker.join(' / ')} |`,
      );
    }
    lines.push('', `oracle hit rate (one unbounded cache): ${(100 * (rows[0]?.oracle ?? 0)).toFixed(1)}%`, '');
  }
  const o = r.overhead;
  if (o.routerP50 !== undefined)
    lines.push(
      `router overhead (1-token requests, warm prefix): through the router p50 ${o.routerP50?.toFixed(2)} ms / p99 ${o.routerP99?.toFixed(2)} ms; direct p50 ${o.directP50?.toFixed(2)} ms / p99 ${o.directP99?.toFixed(2)} ms; added p50 ${((o.routerP50 ?? 0) - (o.directP50 ?? 0)).toFixed(2)} ms, p99 ${((o.routerP99 ?? 0) - (o.directP99 ?? 0)).toFixed(2)} ms`,
    );
  const h = r.http;
  if (h.grpcP50 !== undefined)
    lines.push(
      `HTTP vs gRPC on one router (1-token requests): gRPC p50 ${h.grpcP50?.toFixed(2)} ms / p99 ${h.grpcP99?.toFixed(2)} ms; HTTP p50 ${h.httpP50?.toFixed(2)} ms / p99 ${h.httpP99?.toFixed(2)} ms; HTTP adds p50 ${((h.httpP50 ?? 0) - (h.grpcP50 ?? 0)).toFixed(2)} ms, p99 ${((h.httpP99 ?? 0) - (h.grpcP99 ?? 0)).toFixed(2)} ms; 32 streams of ${STREAM_TOKENS} tokens: gRPC ${h.grpcTokensPerS?.toFixed(0)} tok/s, SSE ${h.sseTokensPerS?.toFixed(0)} tok/s (${((100 * (h.sseTokensPerS ?? 0)) / (h.grpcTokensPerS ?? 1)).toFixed(1)}% of gRPC)`,
    );
  for (const [where, d] of [
    ['one Redis', r.decisions],
    ['a 3-master Redis Cluster', r.clusterDecisions],
  ] as const) {
    if (d.blocks === undefined) continue;
    lines.push(
      `routing decisions (64-block lookup over 4 workers + cache_aware) with ${d.blocks} indexed blocks on ${where} (${d.bytesPerBlock?.toFixed(0)} bytes/block): ${d.sequentialPerSec?.toFixed(0)}/s sequential, ${d.concurrent16PerSec?.toFixed(0)}/s with 16 in flight`,
    );
  }
  return lines.join('\n');
}
