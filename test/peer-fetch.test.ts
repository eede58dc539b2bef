// Peer fetch (issue #19): a worker told by the router that a peer holds a prompt's prefix pulls
// those blocks over gRPC (FetchBlocks) instead of computing them: bit-identical blocks, so the
// same greedy tokens; a peer that dies mid-stream, hangs, sends a corrupt block or holds another
// model's blocks leaves the request to compute what did not arrive, never failing it.
import * as grpc from '@grpc/grpc-js';
import { Engine, generate as offline } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import {
  type FetchBlocksResponse__Output,
  promptBlockHashes,
  protos,
  type WorkerClient,
  type WorkerGenerateRequest,
  type WorkerHandlers,
} from '@kcache/protocol';
import { startRouter } from '@kcache/router';
import { fetchWorthIt, type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { startRedis } from './helpers/redis.js';
import { routed, routerClient } from './helpers/router-client.js';
import { collect, generate, workerClient } from './helpers/worker-client.js';

const GREEDY = { temperature: 0 };
const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));

let a: RunningWorker; // holds the prefixes
let b: RunningWorker; // is sent the requests, with a hint naming a
let ca: WorkerClient;
let cb: WorkerClient;
let reference: Engine;
const started: { close(): Promise<void> }[] = [];

const start = (id: string, extra: Partial<Parameters<typeof startWorker>[0]> = {}) =>
  startWorker({ model: STORIES_260K, port: 0, redisUrl: null, workerId: id, numBlocks: 64, threads: 1, metricsPort: null, ...extra });

/**
 * A fetching worker that has measured nothing yet. On stories260K a measured prefill is cheaper
 * than any transfer (the cost rule then computes), so each case starts one that has not.
 */
async function fresh(id: string, extra: Partial<Parameters<typeof startWorker>[0]> = {}): Promise<{ w: RunningWorker; c: WorkerClient }> {
  const w = await start(id, { peerFetchTimeoutMs: 500, ...extra });
  const c = workerClient(w.address);
  started.push({
    close: async () => {
      c.close();
      await w.close();
    },
  });
  return { w, c };
}

beforeAll(async () => {
  a = await start('peer-a');
  b = await start('peer-b', { peerFetchTimeoutMs: 500 });
  ca = workerClient(a.address);
  cb = workerClient(b.address);
  reference = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 64, threads: 1, kvDtype: 'auto' });
});
afterAll(async () => {
  ca?.close();
  cb?.close();
  reference?.dispose();
  for (const s of [a, b, ...started]) await s?.close();
});

async function cold(ids: number[]): Promise<number[]> {
  const r = await offline(reference, {
    promptIds: ids,
    maxTokens: 16,
    sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 },
    ignoreEos: true,
  });
  return r.tokenIds;
}

const req = (id: string, ids: number[], peer?: { address: string; workerId: string; blocks: number }): WorkerGenerateRequest => ({
  requestId: id,
  tokenIds: ids,
  sampling: GREEDY,
  stop: { maxTokens: 16, ignoreEos: true },
  ...(peer ? { peerAddress: peer.address, peerWorkerId: peer.workerId, peerBlocks: peer.blocks } : {}),
});

async function metric(w: RunningWorker, name: string): Promise<string> {
  return (await w.metrics.registry.metrics())
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

/** A stand-in peer for faults at the boundary: FetchBlocks does what `behave` says (the rest is unused). */
async function fakePeer(behave: WorkerHandlers['FetchBlocks']): Promise<{ address: string; close(): Promise<void> }> {
  const server = new grpc.Server();
  const unimplemented = (_c: unknown, cb2: (e: { code: grpc.status }) => void) => cb2({ code: grpc.status.UNIMPLEMENTED });
  server.addService(protos().v1.Worker.service, {
    FetchBlocks: behave,
    Generate: (c: grpc.ServerWritableStream<unknown, unknown>) => c.emit('error', { code: grpc.status.UNIMPLEMENTED }),
    Abort: unimplemented,
    Info: unimplemented,
    Snapshot: unimplemented,
  } as unknown as WorkerHandlers);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  const peer = { address: `127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
  started.push(peer);
  return peer;
}

/** The real blocks worker a streams for these hashes. */
function realBlocks(hashes: string[]): Promise<FetchBlocksResponse__Output[]> {
  const info = a.engine.info();
  return new Promise((resolve, reject) => {
    const out: FetchBlocksResponse__Output[] = [];
    const call = ca.FetchBlocks({
      hashes,
      modelId: a.engine.model.id,
      blockSize: info.blockSize,
      kvDtype: info.kvDtype,
      bytesPerBlock: info.kvBytesPerBlock,
      fromWorker: 'test',
    });
    call.on('data', (m: FetchBlocksResponse__Output) => out.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

describe('peer fetch', () => {
  test('the cost rule: fetch unless measured prefill is cheaper than the measured transfer', () => {
    expect(fetchWorthIt({ tokens: 16, bytes: 1e6, prefillSecondsPerToken: null, fetchBytesPerSecond: null })).toBe(true);
    // 1 MB at 1 GB/s + 2 ms = 3 ms against 16 tokens x 1 ms
    expect(fetchWorthIt({ tokens: 16, bytes: 1e6, prefillSecondsPerToken: 1e-3, fetchBytesPerSecond: 1e9 })).toBe(true);
    expect(fetchWorthIt({ tokens: 16, bytes: 1e6, prefillSecondsPerToken: 1e-5, fetchBytesPerSecond: 1e9 })).toBe(false);
  });

  test('a prompt a peer holds is pulled from it: cached tokens, the same greedy tokens, and the blocks byte for byte', async () => {
    const P = prompt(97, 3); // 6 cacheable blocks
    const onA = await generate(ca, req('a1', P));
    expect(onA.usage.cachedTokens).toBe(0);
    const hint = { address: a.address, workerId: 'peer-a', blocks: 6 };
    const onB = await generate(cb, req('b1', P, hint));
    expect(onB.usage.cachedTokens).toBe(96);
    expect(onB.tokenIds).toEqual(onA.tokenIds);
    expect(onB.tokenIds).toEqual(await cold(P));
    // the fetched blocks are the peer's bytes, and the bytes a third worker computes for the prompt
    // in chunks of another size (same model, KV dtype and salt)
    const hashes = promptBlockHashes(P, 16, { modelId: a.engine.model.id, cacheSalt: '' });
    const pa = a.engine.readBlocks(a.blocks.lookup(hashes));
    const pb = b.engine.readBlocks(b.blocks.lookup(hashes));
    expect(Buffer.from(pb).equals(Buffer.from(pa))).toBe(true);
    const { w: third, c: tc } = await fresh('peer-third', { maxBatchedTokens: 40 });
    await generate(tc, req('third', P));
    expect(third.blocks.lookup(hashes)).toHaveLength(6);
    expect(Buffer.from(third.engine.readBlocks(third.blocks.lookup(hashes))).equals(Buffer.from(pa))).toBe(true);
    expect(await metric(b, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="fetched"[^\n]* 1/);
    expect(await metric(b, 'kcache_prefix_cache_hits_by_tier_total')).toMatch(/tier="peer"[^\n]* 96/);
    expect(await metric(a, 'kcache_peer_served_blocks_total')).toMatch(/ 6$/m);
    // held here now: a second hint fetches nothing
    await generate(cb, req('b2', P, hint));
    expect(await metric(b, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="held_here"[^\n]* 1/);
  });

  test('only what is missing is fetched: a local prefix is kept and continued', async () => {
    const { w, c } = await fresh('peer-local');
    const shared = prompt(48, 9);
    const P = [...shared, ...prompt(49, 10).slice(1)]; // 96 tokens: 6 blocks, the first 3 shared
    await generate(c, req('b-local', [...shared, 7])); // it computes the first 3 blocks itself
    await generate(ca, req('a-full', P));
    const r = await generate(c, req('b-cont', P, { address: a.address, workerId: 'peer-a', blocks: 6 }));
    expect(r.usage.cachedTokens).toBe(80); // 3 local + 2 fetched blocks (the last prompt token's block is computed)
    expect(await metric(w, 'kcache_peer_fetch_blocks_total')).toMatch(/ 2$/m);
    expect(r.tokenIds).toEqual(await cold(P));
  });

  test('a peer that dies after one block: that block is used, the rest computed, the request served', async () => {
    const P = prompt(97, 21);
    await generate(ca, req('a-die', P));
    const hashes = promptBlockHashes(P, 16, { modelId: a.engine.model.id, cacheSalt: '' });
    const [first] = await realBlocks(hashes);
    const dying = await fakePeer((call) => {
      call.write(first as FetchBlocksResponse__Output);
      setTimeout(() => call.destroy(new Error('peer killed')), 20);
    });
    const { w, c } = await fresh('peer-die');
    const r = await generate(c, req('b-die', P, { address: dying.address, workerId: 'peer-a', blocks: 6 }));
    expect(r.finishReason).toBe('length');
    expect(r.usage.cachedTokens).toBe(16);
    expect(r.tokenIds).toEqual(await cold(P));
    expect(await metric(w, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="partial"/);
  });

  test('a peer that hangs, sends a corrupt block, or is not there: computed, never failed', async () => {
    const P = prompt(97, 33);
    await generate(ca, req('a-bad', P));
    const hashes = promptBlockHashes(P, 16, { modelId: a.engine.model.id, cacheSalt: '' });
    const good = await realBlocks(hashes);
    const hanging = await fakePeer(() => {}); // never answers: the 500 ms bound ends it
    const corrupt = await fakePeer((call) => {
      const bad = Buffer.from(good[0]?.data as Buffer);
      bad.writeUInt8(bad.readUInt8(7) ^ 1, 7);
      call.write({ ...good[0], data: bad });
      call.end();
    });
    const expected = await cold(P);
    // a listening peer that never answers, one that sends a bad block, a closed port, and an
    // address nothing answers from (a peer behind a network policy): the last two fail at connect
    const addresses = [hanging.address, corrupt.address, '127.0.0.1:1', '10.255.255.1:50061'];
    for (const [i, address] of addresses.entries()) {
      const { w, c } = await fresh(`peer-bad-${i}`);
      const t0 = performance.now();
      const r = await generate(c, req(`b-bad-${i}`, P, { address, workerId: 'peer-a', blocks: 6 }));
      const waited = performance.now() - t0;
      expect(r.usage.cachedTokens).toBe(0);
      expect(r.finishReason).toBe('length');
      expect(r.tokenIds).toEqual(expected);
      expect(waited).toBeLessThan(i >= 2 ? 1500 : 5000);
      expect(await metric(w, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="failed"[^\n]* 1/);
      // the failed peer is not asked again at once: the next request computes without waiting for it
      const again = await generate(c, req(`b-bad-${i}-again`, prompt(97, 34), { address, workerId: 'peer-a', blocks: 6 }));
      expect(again.finishReason).toBe('length');
      expect(await metric(w, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="peer_backoff"[^\n]* 1/);
    }
  });

  test('a peer holding another model refuses: FAILED_PRECONDITION naming both layouts', async () => {
    const other = await start('peer-other', { model: 'dummy:tiny' });
    const client = workerClient(other.address);
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.FetchBlocks({ hashes: ['00'], modelId: 'x', blockSize: 16, kvDtype: 'f16', bytesPerBlock: 10, fromWorker: 't' });
      call.on('data', () => {});
      call.on('error', resolve);
    });
    client.close();
    await other.close();
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(
      /^fetch_blocks: this worker holds dummy:tiny\S* blocks of 16 tokens in f16 \(\d+ bytes\), not x \/ 16 \/ f16 \(10 bytes\)$/,
    );
  });

  test('--peer-fetch off: the hint is ignored', async () => {
    const off = await start('peer-off', { peerFetch: false });
    const client = workerClient(off.address);
    const P = prompt(97, 40);
    await generate(ca, req('a-off', P));
    const r = await generate(client, req('off-1', P, { address: a.address, workerId: 'peer-a', blocks: 6 }));
    client.close();
    await off.close();
    expect(r.usage.cachedTokens).toBe(0);
  });

  test('end to end: a request of a hot prefix that the balance guard spills reports cached tokens on the idle worker', async () => {
    const redis = await startRedis();
    const ws = [await start('spill-1', { redisUrl: redis.url }), await start('spill-2', { redisUrl: redis.url })];
    // any load difference spills: the hot worker is busy with one request
    const router = await startRouter({
      apiKeys: null,
      port: 0,
      redisUrl: redis.url,
      refreshMs: 100,
      cacheAware: { loadCostTokens: 1, balanceAbsThreshold: 0, balanceRelThreshold: 1 },
    });
    const c = routerClient(router.address);
    try {
      await router.refresh();
      const P = prompt(97, 55);
      const ask = (ids: number[], maxTokens: number) => ({ tokenIds: { ids }, sampling: GREEDY, stop: { maxTokens, ignoreEos: true } });
      const first = await routed(c, ask([...P, 5], 1));
      await new Promise((r) => setTimeout(r, 50));
      await router.syncIndex();
      let firstToken: () => void = () => {};
      const started = new Promise<void>((r) => {
        firstToken = r;
      });
      const holdCall = c.Generate(ask([...P, 6], 300));
      holdCall.once('data', () => firstToken());
      const hold = collect(holdCall);
      await started;
      const probe = await routed(c, ask([...P, 7], 16));
      expect(probe.workerId).not.toBe(first.workerId);
      expect(probe.usage.cachedTokens).toBe(96);
      expect(probe.tokenIds).toEqual(await cold([...P, 7]));
      expect((await hold).workerId).toBe(first.workerId);
      const idle = ws.find((w) => w.workerId === probe.workerId) as RunningWorker;
      expect(await metric(idle, 'kcache_peer_fetch_requests_total')).toMatch(/outcome="fetched"[^\n]* 1/);
    } finally {
      c.close();
      await router.close();
      for (const w of ws) await w.close();
      await redis.stop();
    }
  });
});
