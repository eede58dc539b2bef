// Batch inference on BullMQ, as users run it: `kcache batch submit|status|results|cancel` and
// `kcache serve batch` runners (real processes) against a real router (its OpenAI API) and two
// dummy:tiny workers on a private Redis. Exactly one result per custom_id, greedy outputs equal to
// direct requests, a higher prefix hit rate in the cache-aware order, a runner SIGKILLed
// mid-batch, and cancel.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectRedis, type RedisClient } from '@kcache/block-index';
import { type BatchInfo, batchStatus } from '@kcache/jobs';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { type KcacheProcess, runKcache, spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';

let redis: TestRedis;
let conn: RedisClient;
const workers: RunningWorker[] = [];
let router: RunningRouter;
let http: string;
const runners: KcacheProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = connectRedis(redis.url, { maxRetriesPerRequest: null });
  // 48 blocks of 16 tokens: a worker keeps about two of the tests' 330-token prefixes
  for (const id of ['b1', 'b2'])
    workers.push(await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: id, numBlocks: 48, threads: 1 }));
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100, httpPort: 0 });
  await router.refresh();
  http = `http://127.0.0.1:${router.httpPort}`;
}, 60_000);

afterEach(async () => {
  for (const r of runners) if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
  await Promise.all(runners.splice(0).map((r) => r.exited));
});

afterAll(async () => {
  await router?.close();
  for (const w of workers) await w.close();
  conn?.disconnect();
  await redis?.stop();
});

async function runner(...flags: string[]): Promise<KcacheProcess> {
  const r = spawnKcache(['serve', 'batch', '--redis-url', redis.url, '--router', http, '--lock-ms', '1000', ...flags]);
  runners.push(r);
  await r.ready;
  return r;
}

interface Line {
  custom_id: string;
  method: 'POST';
  url: string;
  body: Record<string, unknown>;
}

/**
 * `groups` groups of `each` requests; a group's prompts share a 330-character prefix (unique to
 * this call, so no earlier test cached it) and differ at the end. In the file the groups take
 * turns (request n is of group n % groups), as when several evaluations' prompts are mixed.
 */
function batchFile(groups: number, each: number, maxTokens = 4): { file: string; lines: Line[] } {
  const salt = randomUUID().slice(0, 8);
  const lines: Line[] = [];
  for (let n = 0; n < groups * each; n++) {
    const g = n % groups;
    const prefix = `[${salt} group ${g}] ${'The same long instructions for every question of this group. '.repeat(5)}`;
    lines.push(
      n % 3 === 2
        ? {
            custom_id: `no-model-${n}`,
            method: 'POST',
            url: '/v1/completions',
            body: { prompt: `${prefix}Question ${n}?`, max_tokens: maxTokens, temperature: 0 },
          }
        : {
            custom_id: `q-${n}`,
            method: 'POST',
            url: '/v1/completions',
            body: { model: 'dummy:tiny:f32', prompt: `${prefix}Question ${n}?`, max_tokens: maxTokens, temperature: 0 },
          },
    );
  }
  const file = join(tempDir('kcache-batch-'), 'requests.jsonl');
  writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
  return { file, lines };
}

async function until(id: string, done: (b: BatchInfo) => boolean, ms = 60_000): Promise<BatchInfo> {
  const end = Date.now() + ms;
  for (;;) {
    const b = (await batchStatus(conn, id)) as BatchInfo;
    if (done(b)) return b;
    if (Date.now() > end) throw new Error(`batch ${id}: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function results(
  id: string,
): Promise<{ custom_id: string; response: { status_code: number; body: { choices: { text: string }[] } } }[]> {
  const r = await runKcache('batch', 'results', id, '--redis-url', redis.url);
  expect(r.code).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

describe('kcache batch', () => {
  test('60 requests in 6 prefix groups: one result per custom_id, greedy text equal to direct requests; cache-aware order hits more than file order', async () => {
    const r = await runner('--concurrency', '4');
    const rates: Record<string, number> = {};
    for (const order of ['cache', 'file']) {
      const { file, lines } = batchFile(6, 10);
      const out = await runKcache('batch', 'submit', file, '--wait', '--json', '--order', order, '--redis-url', redis.url);
      expect(out.code).toBe(0);
      const info = JSON.parse(out.stdout) as BatchInfo;
      expect(info).toMatchObject({ status: 'completed', counts: { total: 60, completed: 60, failed: 0 }, order });
      expect(info.groups).toBe(order === 'cache' ? 6 : 60);
      const got = await results(info.id);
      expect(got.map((x) => x.custom_id).sort()).toEqual(lines.map((l) => l.custom_id).sort());
      // the same greedy text as each request sent directly
      for (const [i, line] of lines.entries()) {
        if (i % 7 !== 0) continue;
        const direct = (await (
          await fetch(`${http}${line.url}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(line.body),
          })
        ).json()) as { choices: { text: string }[] };
        const mine = got.find((x) => x.custom_id === line.custom_id);
        expect(mine?.response.status_code).toBe(200);
        expect(mine?.response.body.choices[0]?.text).toBe(direct.choices[0]?.text);
      }
      rates[order] = info.usage.cachedTokens / info.usage.promptTokens;
    }
    expect(rates.cache).toBeGreaterThan((rates.file as number) + 0.2); // measured 0.78 against 0.23
    r.proc.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  }, 120_000);

  test('a runner SIGKILLed mid-batch: a new one finishes it, no result missing and none twice', async () => {
    const first = await runner('--concurrency', '2', '--rate', '15');
    const { file, lines } = batchFile(6, 10, 8);
    const out = await runKcache('batch', 'submit', file, '--json', '--redis-url', redis.url);
    expect(out.code).toBe(0);
    const { id } = JSON.parse(out.stdout) as BatchInfo;
    await until(id, (b) => b.counts.completed >= 12);
    first.proc.kill('SIGKILL');
    await first.exited;
    const mid = (await batchStatus(conn, id)) as BatchInfo;
    expect(mid.counts.completed).toBeLessThan(60);
    const second = await runner('--concurrency', '4');
    const done = await until(id, (b) => b.status === 'completed');
    expect(done.counts).toEqual({ total: 60, completed: 60, failed: 0 });
    const got = await results(id);
    expect(got).toHaveLength(60);
    expect(new Set(got.map((x) => x.custom_id)).size).toBe(60);
    expect(got.map((x) => x.custom_id).sort()).toEqual(lines.map((l) => l.custom_id).sort());
    second.proc.kill('SIGTERM');
    await second.exited;
  }, 120_000);

  test('cancel stops the remaining requests; status reports the counts', async () => {
    const r = await runner('--concurrency', '1', '--rate', '5');
    const { file } = batchFile(3, 10);
    const { id } = JSON.parse((await runKcache('batch', 'submit', file, '--json', '--redis-url', redis.url)).stdout) as BatchInfo;
    await until(id, (b) => b.counts.completed >= 3);
    const c = await runKcache('batch', 'cancel', id, '--json', '--redis-url', redis.url);
    expect(c.code).toBe(0);
    const cancelled = JSON.parse(c.stdout) as BatchInfo;
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.counts.completed).toBeGreaterThanOrEqual(3);
    expect(cancelled.counts.completed).toBeLessThan(30);
    await new Promise((res) => setTimeout(res, 1500)); // nothing more of it runs
    const later = await runKcache('batch', 'status', id, '--json', '--redis-url', redis.url);
    expect(JSON.parse(later.stdout)).toMatchObject({ status: 'cancelled', counts: cancelled.counts });
    expect(await results(id)).toHaveLength(cancelled.counts.completed);
    const text = await runKcache('batch', 'status', id, '--redis-url', redis.url);
    expect(text.stdout).toMatch(
      new RegExp(`^${id} cancelled {2}\\[#*-*\\] ${cancelled.counts.completed}/30 done, 0 failed, [\\d,]+ tokens\\n$`),
    );
    r.proc.kill('SIGTERM');
    await r.exited;
  }, 60_000);

  test('bad input: one line naming the line and field, exit 1; nothing is queued', async () => {
    const dir = tempDir('kcache-batch-bad-');
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(
      bad,
      `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { prompt: 'x' } })}\n${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { prompt: 'y' } })}\n`,
    );
    const dup = await runKcache('batch', 'submit', bad, '--redis-url', redis.url);
    expect(dup).toMatchObject({ code: 1, stderr: `kcache: ${bad}: line 2: custom_id 'a' is already used on line 1\n` });
    const missing = await runKcache('batch', 'submit', join(dir, 'none.jsonl'), '--redis-url', redis.url);
    expect(missing).toMatchObject({ code: 1, stderr: `kcache: ${join(dir, 'none.jsonl')}: no such file\n` });
    expect(await runKcache('batch', 'status', 'batch_nope', '--redis-url', redis.url)).toMatchObject({
      code: 1,
      stderr: "kcache: no batch 'batch_nope'\n",
    });
    expect(await runKcache('batch', 'submit', bad)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--redis-url URL or REDIS_URL/),
    });
    expect(await runKcache('batch', 'frobnicate', 'x', '--redis-url', redis.url)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/unknown subcommand/),
    });
    expect(await runKcache('batch', 'submit', bad, '--priority', 'urgent', '--redis-url', redis.url)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--priority must be one of high, normal, low, got 'urgent'/),
    });
  });
});
