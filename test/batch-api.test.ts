// OpenAI's Files and Batches endpoints on the router, called with the official `openai` SDK: upload a
// Batch input file, create a batch, wait for a `kcache serve batch` runner to finish it, read the
// output file; batches and files belong to their tenant; bad requests are 400s naming the field.
// Real router (API keys for two tenants), a dummy:tiny worker and a runner process, private Redis.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiKeys, type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type KcacheProcess, spawnKcache } from './helpers/processes.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';

const KEY_A = 'batch-api-key-a-0123456789';
const KEY_B = 'batch-api-key-b-0123456789';

let redis: TestRedis;
let worker: RunningWorker;
let router: RunningRouter;
let runner: KcacheProcess;
let a: OpenAI;
let b: OpenAI;

beforeAll(async () => {
  redis = await startRedis();
  worker = await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: 'ba1', numBlocks: 128, threads: 1 });
  const keys = join(tempDir('kcache-batch-api-'), 'keys');
  writeFileSync(keys, `${KEY_A} acme\n${KEY_B} globex\n`);
  router = await startRouter({ apiKeys: ApiKeys.load(keys), port: 0, redisUrl: redis.url, refreshMs: 100, httpPort: 0 });
  await router.refresh();
  const base = `http://127.0.0.1:${router.httpPort}`;
  runner = spawnKcache(['serve', 'batch', '--redis-url', redis.url, '--router', base, '--api-key', KEY_A, '--upkeep-every-ms', '0']);
  await runner.ready;
  a = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY_A, maxRetries: 0 });
  b = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY_B, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  if (runner && runner.proc.exitCode === null) runner.proc.kill('SIGKILL');
  await runner?.exited;
  await router?.close();
  await worker?.close();
  await redis?.stop();
});

const line = (id: string, prompt: string) =>
  JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/completions', body: { prompt, max_tokens: 3, temperature: 0 } });

test('upload, create, wait, read the output file: one line per custom_id', async () => {
  const text = [line('x', 'Once upon a time'), line('y', 'Once upon a time there'), line('z', 'Hello')].join('\n');
  const file = await a.files.create({ file: await toFile(Buffer.from(text), 'requests.jsonl'), purpose: 'batch' });
  expect(file).toMatchObject({ object: 'file', bytes: Buffer.byteLength(text), filename: 'requests.jsonl', purpose: 'batch' });
  expect((await a.files.retrieve(file.id)).id).toBe(file.id);
  const batch = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
  expect(batch).toMatchObject({ object: 'batch', status: 'in_progress', input_file_id: file.id, endpoint: '/v1/completions' });
  let now = batch;
  for (let i = 0; i < 300 && now.status !== 'completed'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await a.batches.retrieve(batch.id);
  }
  expect(now).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } });
  const out = (await (await a.files.content(now.output_file_id as string)).text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(out.map((o) => o.custom_id)).toEqual(['x', 'y', 'z']);
  for (const o of out) expect(o.response).toMatchObject({ status_code: 200, body: { object: 'text_completion' } });
  const listed = await a.batches.list();
  expect(listed.data.map((x) => x.id)).toContain(batch.id);
  // another tenant sees none of it
  await expect(b.batches.retrieve(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  await expect(b.files.content(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  expect((await b.batches.list()).data).toEqual([]);
  // cancelling a finished batch leaves it completed
  expect((await a.batches.cancel(batch.id)).status).toBe('completed');
}, 60_000);

/** Creates a batch as `client`, waits for it, and returns its output lines. */
async function runBatch(
  client: OpenAI,
  text: string,
): Promise<{ custom_id: string; response: { body: { usage: { prompt_tokens_details: { cached_tokens: number } } } } }[]> {
  const file = await client.files.create({ file: await toFile(Buffer.from(text), 'requests.jsonl'), purpose: 'batch' });
  let now = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
  for (let i = 0; i < 300 && now.status !== 'completed'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await client.batches.retrieve(now.id);
  }
  expect(now.status).toBe('completed');
  const out = await (await client.files.content(now.output_file_id as string)).text();
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

test("two tenants' batches share no cached blocks (the runner runs both under its own key); one tenant's do", async () => {
  const prompt = `A long shared instruction for the tenancy test of batches, ${Date.now()}: answer in one word.`;
  const cached = (out: Awaited<ReturnType<typeof runBatch>>) => out[0]?.response.body.usage.prompt_tokens_details.cached_tokens;
  expect(cached(await runBatch(b, line('g1', prompt)))).toBe(0);
  // the same prompt from the other tenant (whose key the runner holds): nothing cached for it
  expect(cached(await runBatch(a, line('a1', prompt)))).toBe(0);
  // the first tenant again: its own earlier batch's prefix is there
  expect(cached(await runBatch(b, line('g2', prompt)))).toBeGreaterThan(0);
});

test('bad requests are 400s naming the field; unknown ids 404; no key 401', async () => {
  const chat = JSON.stringify({
    custom_id: 'q',
    method: 'POST',
    url: '/v1/chat/completions',
    body: { messages: [{ role: 'user', content: 'b' }] },
  });
  const mixed = [line('p', 'a'), chat].join('\n');
  const file = await a.files.create({ file: await toFile(Buffer.from(mixed), 'mixed.jsonl'), purpose: 'batch' });
  const e1 = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' }).catch((x) => x);
  expect(e1).toBeInstanceOf(OpenAI.BadRequestError);
  expect(e1.error).toMatchObject({ param: 'input_file_id', message: expect.stringMatching(/request 2 .* is not the batch's endpoint/) });
  const e2 = await a.batches
    .create({ input_file_id: file.id, endpoint: '/v1/embeddings' as '/v1/completions', completion_window: '24h' })
    .catch((x) => x);
  expect(e2).toBeInstanceOf(OpenAI.BadRequestError);
  expect(e2.error).toMatchObject({ param: 'endpoint' });
  const e3 = await a.files.create({ file: await toFile(Buffer.from('x'), 'f.jsonl'), purpose: 'fine-tune' }).catch((x) => x);
  expect(e3).toBeInstanceOf(OpenAI.BadRequestError);
  expect(e3.error).toMatchObject({ param: 'purpose' });
  const e4 = await a.batches.create({ input_file_id: 'file-nope', endpoint: '/v1/completions', completion_window: '24h' }).catch((x) => x);
  expect(e4).toBeInstanceOf(OpenAI.NotFoundError);
  const anonymous = new OpenAI({ baseURL: a.baseURL, apiKey: 'wrong-key-0123456789', maxRetries: 0 });
  await expect(anonymous.batches.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
});
