// The worker over real gRPC on loopback, with a private Redis: prefix caching, continuous
// batching equal to one-at-a-time, eviction, preemption, cancellation, KV events, health.
import * as grpc from '@grpc/grpc-js';
import { Engine, generate as offline } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { decodeKvEvent, kvStreamKey, leaseKey, parseLease, promptBlockHashes, type WorkerClient } from '@kcache/protocol';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { listServices } from './helpers/reflection.js';
import { generate, unary, workerClient } from './helpers/worker-client.js';

const GREEDY = { temperature: 0 };
let redis: TestRedis;
let reference: Engine;

function prompt(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + seed * 101) % 500)));
}

/** Greedy output of one sequence alone, offline: the ground truth for the served outputs. */
async function cold(ids: number[], maxTokens: number): Promise<number[]> {
  const r = await offline(reference, {
    promptIds: ids,
    maxTokens,
    sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 },
    ignoreEos: true,
  });
  return r.tokenIds;
}

beforeAll(async () => {
  redis = await startRedis();
  // the worker's default KV cache ('auto': f16 for these f32 weights)
  reference = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 40, threads: 1, kvDtype: 'auto' });
});
afterAll(async () => {
  reference.dispose();
  await redis.stop();
});

describe('a worker with room to spare', () => {
  let w: RunningWorker;
  let client: WorkerClient;
  beforeAll(async () => {
    w = await startWorker({
      model: STORIES_260K,
      port: 0,
      redisUrl: redis.url,
      workerId: 'w-main',
      numBlocks: 256,
      metricsPort: 0,
      threads: 2,
    });
    client = workerClient(w.address);
  });
  afterAll(async () => {
    client.close();
    await w.close();
  });

  test('a second worker started with the same id is refused and leaves the first one untouched', async () => {
    const before = parseLease((await redis.client.get(leaseKey('w-main'))) as string);
    await expect(
      startWorker({ model: STORIES_260K, port: 0, redisUrl: redis.url, workerId: 'w-main', numBlocks: 16, threads: 1 }),
    ).rejects.toThrow(/^worker id w-main is in use by another worker at 127\.0\.0\.1:\d+/);
    const after = parseLease((await redis.client.get(leaseKey('w-main'))) as string);
    expect(after?.instance).toBe(before?.instance);
    expect(after?.address).toBe(w.address);
    expect(await redis.client.exists(kvStreamKey('w-main'))).toBe(1);
  });

  test('a shared 64-token prefix is served from the prefix cache with the cold output', async () => {
    const prefix = prompt(64, 1);
    const a = [...prefix, 40, 41, 42];
    const b = [...prefix, 90, 91, 92, 93, 94];
    const ra = await generate(client, { requestId: 'a', tokenIds: a, sampling: GREEDY, stop: { maxTokens: 20, ignoreEos: true } });
    const rb = await generate(client, { requestId: 'b', tokenIds: b, sampling: GREEDY, stop: { maxTokens: 20, ignoreEos: true } });
    expect(ra.usage).toEqual({ promptTokens: 67, completionTokens: 20, cachedTokens: 0 });
    expect(rb.usage.cachedTokens).toBeGreaterThanOrEqual(48);
    expect(rb.usage.cachedTokens).toBe(64);
    expect(rb.tokenIds).toEqual(await cold(b, 20));
    expect(ra.tokenIds).toEqual(await cold(a, 20));
    expect(rb.finishReason).toBe('length');
    expect(rb.workerId).toBe('w-main');
    expect(rb.chunks).toBe(20); // streamed after every step
  });

  test('32 concurrent greedy requests give exactly the one-at-a-time outputs', async () => {
    const prompts = Array.from({ length: 32 }, (_, i) => prompt(5 + ((i * 13) % 70), 100 + i));
    const served = await Promise.all(
      prompts.map((ids, i) =>
        generate(client, { requestId: `c${i}`, tokenIds: ids, sampling: GREEDY, stop: { maxTokens: 12 + (i % 5), ignoreEos: true } }),
      ),
    );
    for (let i = 0; i < prompts.length; i++) expect(served[i]?.tokenIds).toEqual(await cold(prompts[i] as number[], 12 + (i % 5)));
  });

  test('cancelling a stream aborts the sequence and frees its blocks', async () => {
    const before = w.blocks.available;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    const p = generate(
      client,
      { requestId: 'cancel-me', tokenIds: prompt(30, 7), sampling: GREEDY, stop: { maxTokens: 400, ignoreEos: true } },
      { onCall: (c) => (call = c) },
    );
    await new Promise((r) => setTimeout(r, 50));
    call?.cancel();
    await expect(p).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    for (let i = 0; i < 50 && w.blocks.available !== before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.blocks.available).toBe(before);
  });

  test('a deadline ends the request with DEADLINE_EXCEEDED and frees its blocks', async () => {
    const before = w.blocks.available;
    await expect(
      generate(
        client,
        { requestId: 'slow', tokenIds: prompt(20, 8), sampling: GREEDY, stop: { maxTokens: 450, ignoreEos: true } },
        { deadlineMs: 30 },
      ),
    ).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    for (let i = 0; i < 50 && w.blocks.available !== before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.blocks.available).toBe(before);
  });

  test.each([
    [{ tokenIds: [] }, grpc.status.INVALID_ARGUMENT, /token_ids: at least one token/],
    [{ tokenIds: [1, 512] }, grpc.status.INVALID_ARGUMENT, /token_ids\[1\] = 512 is outside the vocabulary/],
    [{ tokenIds: prompt(512, 1) }, grpc.status.INVALID_ARGUMENT, /token_ids: a prompt of 512 tokens leaves no room/],
    [{ tokenIds: [1, 5], stop: { maxTokens: 600 } }, grpc.status.INVALID_ARGUMENT, /max_tokens: 600 exceeds the 510 tokens left/],
    [{ tokenIds: [1, 5], sampling: { temperature: -1 } }, grpc.status.INVALID_ARGUMENT, /temperature must be a finite number >= 0/],
    [{ tokenIds: [1, 5], sampling: { temperature: Number.NaN } }, grpc.status.INVALID_ARGUMENT, /temperature/],
    [{ tokenIds: [1, 5], sampling: { repetitionPenalty: 0 } }, grpc.status.INVALID_ARGUMENT, /repetition_penalty/],
  ])('bad request %j', async (req, code, message) => {
    const err = await generate(client, { requestId: 'bad', ...req }).catch((e) => e);
    expect(err).toMatchObject({ code });
    expect(err.details).toMatch(message);
  });

  test('Info, grpc.health.v1 and /metrics', async () => {
    const info = await unary<Record<string, unknown>>(client, 'Info', {});
    expect(info).toMatchObject({ workerId: 'w-main', blockSize: 16, attentionMode: 'full', vocabSize: 512, maxModelLen: 512 });
    const health = new grpc.Client(w.address, grpc.credentials.createInsecure());
    const status = await new Promise<Buffer>((res, rej) =>
      health.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (x: Buffer) => x,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0x00]),
        (e, v) => (e ? rej(e) : res(v as Buffer)),
      ),
    );
    expect([...status]).toEqual([0x08, 0x01]); // HealthCheckResponse{status: SERVING}
    health.close();
    const res = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`);
    const body = await res.text();
    for (const m of [
      'kcache_time_to_first_token_seconds',
      'kcache_prefix_cache_hits_total',
      'kcache_kv_cache_usage_perc',
      'kcache_request_success_total',
    ]) {
      expect(body).toContain(m);
    }
    expect(body).toMatch(/kcache_prefix_cache_hits_total\{[^}]*\} [1-9]/);
    // the load gauges are the loop's state at scrape time: back to 0 once requests have ended
    expect(body).toMatch(/kcache_num_requests_running\{[^}]*\} 0\n/);
    expect(body).toMatch(/kcache_num_requests_waiting\{[^}]*\} 0\n/);
    expect(body).toMatch(/kcache_kv_cache_usage_perc\{[^}]*tier="device"[^}]*\} 0\n/);
    // long prefills have buckets, and the process metrics are there
    expect(body).toMatch(/kcache_time_to_first_token_seconds_bucket\{le="2560"/);
    expect(body).toMatch(/process_resident_memory_bytes\{[^}]*\} [1-9]/);
    expect(body).toContain('nodejs_eventloop_lag_seconds');
  });

  test('the Redis stream has the announcement and every stored block, in order, without gaps', async () => {
    const entries = await redis.client.xrange(kvStreamKey('w-main'), '-', '+');
    const events = entries.map(([, f]) => decodeKvEvent(f));
    expect(events[0]).toMatchObject({ seq: 1, event: { type: 'cleared' } });
    expect(events.map((e) => e?.seq)).toEqual(events.map((_, i) => i + 1));
    const stored = new Set(events.flatMap((e) => (e?.event.type === 'stored' ? e.event.hashes : [])));
    const prefixHashes = promptBlockHashes(prompt(64, 1), 16, { modelId: w.engine.model.id });
    for (const h of prefixHashes) expect(stored.has(h)).toBe(true);
    // the lease carries the worker's own load: what every router weighs (rewritten every 500 ms)
    const readLease = async () => parseLease((await redis.client.get(leaseKey('w-main'))) as string);
    const settled = async () => {
      const l = await readLease();
      return (l?.load.cachedBlocks ?? 0) > 0 && l?.load.running === 0;
    };
    for (let i = 0; i < 40 && !(await settled()); i++) await new Promise((r) => setTimeout(r, 50));
    const lease = await readLease();
    expect(lease).toMatchObject({
      workerId: 'w-main',
      address: w.address,
      load: { running: 0, waiting: 0, numBlocks: w.blocks.numBlocks },
    });
    expect(lease?.load.cachedBlocks).toBeGreaterThan(0);
    expect(await redis.client.pttl(leaseKey('w-main'))).toBeGreaterThan(0);
  });
});

describe('a worker under memory pressure', () => {
  test('evicts idle cached blocks LRU-first and reports them; preempts and resumes with the same output', async () => {
    const w = await startWorker({
      model: STORIES_260K,
      port: 0,
      redisUrl: redis.url,
      workerId: 'w-small',
      numBlocks: 12,
      threads: 2,
      metricsPort: null,
    });
    const client = workerClient(w.address);
    // 4 requests of 4-5 blocks each on a 12-block pool: some must wait or be preempted
    const prompts = [prompt(40, 11), prompt(35, 12), prompt(45, 13), prompt(30, 14)];
    const served = await Promise.all(
      prompts.map((ids, i) =>
        generate(client, { requestId: `p${i}`, tokenIds: ids, sampling: GREEDY, stop: { maxTokens: 30, ignoreEos: true } }),
      ),
    );
    for (let i = 0; i < prompts.length; i++) expect(served[i]?.tokenIds).toEqual(await cold(prompts[i] as number[], 30));
    const preemptions = (await w.metrics.preemptions.get()).values[0]?.value ?? 0;
    expect(preemptions).toBeGreaterThan(0);
    const entries = await redis.client.xrange(kvStreamKey('w-small'), '-', '+');
    const types = entries.map(([, f]) => decodeKvEvent(f)?.event.type);
    expect(types).toContain('removed');
    expect(w.blocks.available).toBe(12);
    client.close();
    await w.close();
    expect(await redis.client.exists(leaseKey('w-small'))).toBe(0);
  });

  test('a full queue answers RESOURCE_EXHAUSTED', async () => {
    const w = await startWorker({ model: STORIES_260K, port: 0, redisUrl: null, numBlocks: 8, maxNumSeqs: 1, maxWaiting: 1, threads: 1 });
    const client = workerClient(w.address);
    const long = { sampling: GREEDY, stop: { maxTokens: 100, ignoreEos: true } };
    const first = generate(client, { requestId: 'q1', tokenIds: prompt(10, 1), ...long });
    const second = generate(client, { requestId: 'q2', tokenIds: prompt(10, 2), ...long });
    // until q1 runs and q2 waits (the gauge reads the loop's state when asked)
    const gauge = async (g: typeof w.metrics.running) => (await g.get()).values[0]?.value;
    for (let i = 0; i < 500 && ((await gauge(w.metrics.running)) !== 1 || (await gauge(w.metrics.waiting)) !== 1); i++)
      await new Promise((r) => setTimeout(r, 2));
    const third = await generate(client, { requestId: 'q3', tokenIds: prompt(10, 3), ...long }).catch((e) => e);
    expect(third).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect(third.details).toMatch(/queue is full/);
    await Promise.all([first, second]);
    client.close();
    await w.close();
  });
});

describe('text, stop strings, logprobs and reflection (dummy:tiny, byte tokenizer)', () => {
  let w: RunningWorker;
  let client: WorkerClient;
  beforeAll(async () => {
    w = await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: null, numBlocks: 64, threads: 1 });
    client = workerClient(w.address);
  });
  afterAll(async () => {
    client.close();
    await w.close();
  });

  test('a stop string ends the stream and is not emitted; the text matches the token ids', async () => {
    const ids = [1, ...Buffer.from('Once upon a time').map((b) => b + 3)];
    const full = await generate(client, {
      requestId: 's1',
      tokenIds: ids,
      sampling: { temperature: 0.8, seed: 5 },
      stop: { maxTokens: 60, ignoreEos: true },
    });
    const bytes = full.tokenIds.filter((t) => t >= 3 && t < 259).map((t) => t - 3);
    expect(full.text).toBe(Buffer.from(bytes).toString('utf8'));
    const stop = full.text.slice(20, 23); // may also occur earlier: the cut is at its first occurrence
    const at = full.text.indexOf(stop);
    const cut = await generate(client, {
      requestId: 's2',
      tokenIds: ids,
      sampling: { temperature: 0.8, seed: 5 },
      stop: { maxTokens: 60, ignoreEos: true, stop: [stop] },
    });
    expect(cut.finishReason).toBe('stop');
    expect(cut.text).toBe(full.text.slice(0, at));
  });

  test('a resumed request continues exactly: seeded sampling, max_tokens, text and a stop string across the resume point', async () => {
    const ids = [1, ...Buffer.from('Once upon a time').map((b) => b + 3)];
    const sampling = { temperature: 0.9, seed: 11, frequencyPenalty: 0.5 };
    const full = await generate(client, { requestId: 'r-full', tokenIds: ids, sampling, stop: { maxTokens: 50, ignoreEos: true } });
    // the chunks the client had after 17 tokens, as a router relays them
    const call = client.Generate({ requestId: 'r-head', tokenIds: ids, sampling, stop: { maxTokens: 50, ignoreEos: true } });
    const head = { tokens: [] as number[], text: '' };
    await new Promise<void>((resolve) => {
      call.on('data', (m) => {
        if (!m.chunk || head.tokens.length >= 17) return;
        head.tokens.push(...(m.chunk.tokenIds ?? []));
        head.text += m.chunk.text ?? '';
        if (head.tokens.length === 17) resolve();
      });
    });
    call.cancel();
    call.on('error', () => {});
    const rest = await generate(client, {
      requestId: 'r-rest',
      tokenIds: [...ids, ...head.tokens],
      resumeGenerated: 17,
      resumeTextLen: head.text.length,
      sampling,
      stop: { maxTokens: 50, ignoreEos: true },
    });
    expect([...head.tokens, ...rest.tokenIds]).toEqual(full.tokenIds);
    expect(head.text + rest.text).toBe(full.text);
    expect(rest.usage).toMatchObject({ promptTokens: ids.length, completionTokens: 50 });
    // a stop string that begins before the resume point and ends after it still stops the stream
    const stop = full.text.slice(head.text.length - 2, head.text.length + 3);
    const at = full.text.indexOf(stop);
    if (at >= head.text.length - 2) {
      const cut = await generate(client, {
        requestId: 'r-stop',
        tokenIds: [...ids, ...head.tokens],
        resumeGenerated: 17,
        resumeTextLen: head.text.length,
        sampling,
        stop: { maxTokens: 50, ignoreEos: true, stop: [stop] },
      });
      expect(cut.finishReason).toBe('stop');
      expect(head.text + cut.text).toBe(full.text.slice(0, at));
    }
    await expect(
      generate(client, { requestId: 'r-bad', tokenIds: ids, resumeGenerated: ids.length, sampling, stop: { maxTokens: 50 } }),
    ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^resume_generated: /) });
  });

  test('top-n logprobs come with every token', async () => {
    const r = await generate(client, {
      requestId: 'lp',
      tokenIds: [1, 70, 71],
      sampling: { temperature: 0, logprobs: 3 },
      stop: { maxTokens: 5, ignoreEos: true },
    });
    expect(r.logprobs).toHaveLength(5);
    for (const [i, lp] of r.logprobs.entries()) {
      expect(lp.tokenId).toBe(r.tokenIds[i]);
      expect(lp.top).toHaveLength(3);
      expect(lp.top?.[0]?.tokenId).toBe(lp.tokenId); // greedy picks the most likely token
      expect(lp.logprob).toBeLessThanOrEqual(0);
    }
  });

  test('server reflection lists the Worker service', async () => {
    expect(await listServices(w.address)).toContain('kcache.v1.Worker');
  });
});
