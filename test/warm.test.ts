// Cache warm-up: `kcache warm --prompts FILE --replicas N` prefills prompts on N workers through the
// router (requests pinned with worker_id), and `serve worker --warm-prompts FILE` prefills at start;
// the first real request of a warmed prefix then reports cached tokens. Real router and workers
// (dummy:tiny, byte tokenizer) on a private Redis; the CLI as child processes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KcacheClient } from '@kcache/client';
import { type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, runKcache, spawnKcache, workerArgs } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';

const SYSTEM = 'You are the support assistant of a bakery. Answer in one short sentence, politely. ';
const FEW_SHOT = 'Q: What is two plus two?\nA: Four.\nQ: What colour is the sky?\nA: Blue.\nQ: ';

let redis: TestRedis;
const workers: RunningWorker[] = [];
let router: RunningRouter;
let client: KcacheClient;
let warmedAtStart: KcacheProcess | null = null;
const dir = tempDir('kcache-warm-');

beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['v1', 'v2'])
    workers.push(await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: id, numBlocks: 256, threads: 1 }));
  router = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100 });
  await router.refresh();
  client = new KcacheClient(router.address);
}, 60_000);

afterAll(async () => {
  client?.close();
  if (warmedAtStart && warmedAtStart.proc.exitCode === null) {
    warmedAtStart.proc.kill('SIGKILL');
    await warmedAtStart.exited;
  }
  await router?.close();
  for (const w of workers) await w.close();
  await redis?.stop();
});

const settle = async () => {
  await new Promise((r) => setTimeout(r, 150)); // the workers' KV events reach the index
  await router.syncIndex();
};

test('kcache warm --replicas 2: both workers hold each prompt; the first real request of a warmed prefix is a hit', async () => {
  const file = join(dir, 'prompts.txt');
  writeFileSync(file, `${SYSTEM}\n${JSON.stringify(FEW_SHOT)}\n`);
  const r = await runKcache('warm', '--prompts', file, '--replicas', '2', '--addr', router.address, '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out).toMatchObject({ model: 'dummy:tiny:f32', workers: ['v1', 'v2'], prefills: 4, cachedTokens: 0 });
  await settle();
  // each worker holds both prompts' blocks: a request pinned to it finds them
  for (const workerId of ['v1', 'v2'])
    for (const p of [SYSTEM, FEW_SHOT]) {
      const pinned = await client.generate({ text: `${p}Hi?`, workerId, maxTokens: 1, temperature: 0 });
      expect(pinned.workerId).toBe(workerId);
      expect(pinned.usage.cachedTokens).toBe(Math.floor((Buffer.byteLength(p) + 1) / 16) * 16);
    }
  // a real request through the router: a hit on its first try; a cold prompt is not
  const real = await client.generate({ text: `${FEW_SHOT}Where do bakers work?`, maxTokens: 2, temperature: 0 });
  expect(real.usage.cachedTokens).toBeGreaterThan(0);
  const cold = await client.generate({ text: 'An entirely different prompt that nobody warmed, long enough for blocks.', maxTokens: 1 });
  expect(cold.usage.cachedTokens).toBe(0);
});

test('serve worker --warm-prompts: the worker prefills before it reports ready', async () => {
  const file = join(dir, 'start.txt');
  writeFileSync(file, `${SYSTEM}\n`);
  warmedAtStart = spawnKcache([...workerArgs('dummy:tiny', redis.url, 'v3', 128), '--served-model-name', 'warmed', '--warm-prompts', file]);
  await warmedAtStart.ready;
  await router.refresh();
  await settle();
  const r = await client.generate({ model: 'warmed', text: `${SYSTEM}Do you sell rye bread?`, maxTokens: 1, temperature: 0 });
  expect(r.workerId).toBe('v3');
  expect(r.usage.cachedTokens).toBe(Math.floor((Buffer.byteLength(SYSTEM) + 1) / 16) * 16);
});

test('bad input: a worker id nobody has, a broken prompts file, a missing file', async () => {
  const pinned = await client.generate({ model: 'dummy:tiny:f32', text: 'x', workerId: 'nobody', maxTokens: 1 }).catch((e) => e);
  expect(pinned).toMatchObject({ code: 'NOT_FOUND', details: "worker_id: no live worker 'nobody' serves dummy:tiny:f32" });
  const bad = join(dir, 'bad.txt');
  writeFileSync(bad, 'fine\n{"nope": 1}\n');
  expect(await runKcache('warm', '--prompts', bad, '--addr', router.address)).toMatchObject({
    code: 1,
    stderr: `kcache: ${bad}: line 2: a JSON line must be a string or an object with "messages"\n`,
  });
  expect(await runKcache('warm', '--addr', router.address)).toMatchObject({
    code: 2,
    stderr: expect.stringMatching(/--prompts FILE is required/),
  });
  const worker = await runKcache(...workerArgs('dummy:tiny', redis.url, 'v9', 16), '--warm-prompts', join(dir, 'none.txt'));
  expect(worker.code).toBe(2);
  expect(worker.stderr).toMatch(/^kcache: --warm-prompts: .*none\.txt: no such file$/m);
});
