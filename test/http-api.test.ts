// OpenAI's HTTP API on the router, called with the official `openai` SDK: completions streamed and
// not, n choices, seeds, stop strings, usage with cached tokens, models, errors as the SDK's error
// classes, SSE framing at the byte level, and a client that disconnects. Real router and workers
// (dummy:tiny: a byte tokenizer, so text prompts work), a private Redis.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KcacheClient, KcacheError } from '@kcache/client';
import { ApiKeys, type RunningRouter, startRouter } from '@kcache/router';
import { type RunningWorker, startWorker } from '@kcache/worker';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { tempDir } from './helpers/temp.js';

const KEY = 'http-key-0123456789abcdef';
const SLOW_KEY = 'http-slow-0123456789abcdef';

let redis: TestRedis;
const workers: RunningWorker[] = [];
let router: RunningRouter;
let base: string;
let client: OpenAI;

beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['h1', 'h2'])
    workers.push(await startWorker({ model: 'dummy:tiny', port: 0, redisUrl: redis.url, workerId: id, numBlocks: 256, threads: 1 }));
  // a real trained model (no tokenizer: token-id prompts), whose sampling varies with the seed
  workers.push(await startWorker({ model: STORIES_260K, port: 0, redisUrl: redis.url, workerId: 'hs', numBlocks: 64, threads: 1 }));
  // dummy:tiny again, under a served name
  workers.push(
    await startWorker({
      model: 'dummy:tiny',
      servedModelName: 'tiny-served',
      port: 0,
      redisUrl: redis.url,
      workerId: 'hn',
      numBlocks: 64,
      threads: 1,
    }),
  );
  const keys = join(tempDir('kcache-http-keys-'), 'keys');
  writeFileSync(keys, `${KEY} acme\n${SLOW_KEY} slow 1\n`);
  router = await startRouter({ apiKeys: ApiKeys.load(keys), port: 0, redisUrl: redis.url, refreshMs: 100, httpPort: 0 });
  await router.refresh();
  base = `http://127.0.0.1:${router.httpPort}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await router?.close();
  for (const w of workers) await w.close();
  await redis?.stop();
});

const M = 'dummy:tiny:f32'; // the worker's model id
const PROMPT = 'Once upon a time, in a land far away, there lived a cat.'; // 56 bytes: 57 tokens with BOS

describe('completions', () => {
  test('greedy, not streamed: text, finish reason, usage; the same prompt again reports its cached tokens', async () => {
    const r = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 12, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe(M);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(typeof r.choices[0]?.text).toBe('string');
    expect(r.usage).toMatchObject({ prompt_tokens: 57, completion_tokens: 12, total_tokens: 69 });
    await new Promise((res) => setTimeout(res, 100));
    await router.syncIndex();
    const again = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 12, temperature: 0 });
    expect(again.choices[0]?.text).toBe(r.choices[0]?.text);
    expect(again.usage?.prompt_tokens_details?.cached_tokens).toBe(48); // 3 full blocks of 16
  });

  test('streamed: the chunks add up to the non-streamed text; include_usage sends the usage last', async () => {
    const whole = await client.completions.create({ model: M, prompt: 'Hello there', max_tokens: 10, temperature: 0 });
    const stream = await client.completions.create({
      model: M,
      prompt: 'Hello there',
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const finishes: (string | null)[] = [];
    let last: OpenAI.Completions.Completion | undefined;
    for await (const c of stream) {
      for (const ch of c.choices) {
        text += ch.text;
        finishes.push(ch.finish_reason);
      }
      last = c;
    }
    expect(text).toBe(whole.choices[0]?.text);
    expect(finishes.at(-1)).toBe('length');
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 10 });
  });

  test('n = 2 with a seed: two different choices, the same two again with the same seed; token-id prompts (return_token_ids)', async () => {
    const ask = (n: number, seed: number) =>
      client.completions.create({
        model: STORIES_260K,
        prompt: [1, 365, 471, 260],
        max_tokens: 16,
        temperature: 1,
        n,
        seed,
        return_token_ids: true,
      } as never) as unknown as Promise<
        Omit<OpenAI.Completions.Completion, 'choices'> & { choices: { index: number; token_ids: number[] }[] }
      >;
    const [a, b] = [await ask(2, 7), await ask(2, 7)];
    expect(a.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(a.choices.map((c) => c.token_ids)).toEqual(b.choices.map((c) => c.token_ids));
    expect(a.choices[0]?.token_ids).toHaveLength(16);
    expect(a.choices[0]?.token_ids).not.toEqual(a.choices[1]?.token_ids);
    expect(a.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 32 });
    // choice i is seeded with seed + i
    expect((await ask(1, 8)).choices[0]?.token_ids).toEqual(a.choices[1]?.token_ids);
  });

  test("logprobs: the chosen tokens with their log probabilities and the top alternatives, in OpenAI's format", async () => {
    const r = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]?.logprobs;
    expect(lp?.tokens).toHaveLength(6);
    expect(lp?.tokens?.join('')).toBe(r.choices[0]?.text);
    expect(lp?.text_offset?.[0]).toBe(0);
    lp?.token_logprobs?.forEach((l, i) => {
      expect(l).toBeLessThanOrEqual(0);
      const top = Object.values(lp.top_logprobs?.[i] ?? {});
      expect(top.length).toBeGreaterThan(0);
      expect(top.length).toBeLessThanOrEqual(2);
      expect(l).toBeCloseTo(Math.max(...top), 5); // greedy: the chosen token is the most likely
    });
    const none = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 2, temperature: 0 });
    expect(none.choices[0]?.logprobs).toBeNull();
  });

  test('a stop string ends the text before it', async () => {
    const free = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 24, temperature: 0, ignore_eos: true } as never);
    const text = (free as OpenAI.Completions.Completion).choices[0]?.text ?? '';
    const stop = text.slice(5, 7);
    const cut = await client.completions.create({ model: M, prompt: PROMPT, max_tokens: 24, temperature: 0, stop: [stop] });
    expect(cut.choices[0]?.finish_reason).toBe('stop');
    expect(cut.choices[0]?.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  test('SSE framing: data lines, each followed by a blank line, and data: [DONE] last', async () => {
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: M, prompt: 'abc', max_tokens: 4, temperature: 0, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const body = await res.text();
    expect(body).toMatch(/^(data: \{[^\n]*\}\n\n)+data: \[DONE\]\n\n$/);
  });

  test('a client that disconnects cancels its request', async () => {
    const cancelled = async () => (await router.metrics.requests.get()).values.find((v) => v.labels.outcome === 'cancelled')?.value ?? 0;
    const before = await cancelled();
    const ac = new AbortController();
    const stream = await client.completions.create(
      { model: M, prompt: PROMPT, max_tokens: 1500, temperature: 0, stream: true, ignore_eos: true } as never,
      { signal: ac.signal },
    );
    let seen = 0;
    try {
      for await (const _ of stream as unknown as AsyncIterable<unknown>) if (++seen === 3) ac.abort();
    } catch {
      // the SDK reports the abort
    }
    for (let i = 0; i < 100 && (await cancelled()) === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await cancelled()).toBe(before + 1);
    for (let i = 0; i < 100 && workers.some((w) => w.blocks.available < 256 - 8); i++) await new Promise((r) => setTimeout(r, 20));
  });
});

describe('models, health and errors', () => {
  test('models.list() and /health', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual([STORIES_260K, M, 'tiny-served'].sort());
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  test("errors in OpenAI's shape, as the SDK's error classes", async () => {
    const bad = await client.completions.create({ model: M, prompt: 'x', max_tokens: 0 }).catch((e) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad.error).toMatchObject({ type: 'invalid_request_error', param: 'max_tokens', code: 'INVALID_ARGUMENT' });
    const missing = await client.completions.create({ model: 'nope', prompt: 'x' }).catch((e) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing.error).toMatchObject({ param: 'model', code: 'NOT_FOUND' });
    const stranger = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong-0123456789abcdef', maxRetries: 0 });
    expect(await stranger.completions.create({ model: M, prompt: 'x' }).catch((e) => e)).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(await stranger.models.list().catch((e) => e)).toBeInstanceOf(OpenAI.AuthenticationError);
    const slow = new OpenAI({ baseURL: `${base}/v1`, apiKey: SLOW_KEY, maxRetries: 0 });
    await slow.completions.create({ model: M, prompt: 'x', max_tokens: 1 });
    const limited = await slow.completions.create({ model: M, prompt: 'x', max_tokens: 1 }).catch((e) => e);
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    // a streamed request that fails before its first token still gets its status
    const early = await client.completions.create({ model: 'nope', prompt: 'x', stream: true }).catch((e) => e);
    expect(early).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

test('--served-model-name: the API, the metrics and the block hashes use the name; the tokenizer still comes from the model', async () => {
  const predicted = async () => (await router.metrics.predictedCached.get()).values.reduce((n, v) => n + v.value, 0);
  const first = await client.completions.create({ model: 'tiny-served', prompt: PROMPT, max_tokens: 2, temperature: 0 });
  expect(first.model).toBe('tiny-served');
  expect(first.usage?.prompt_tokens).toBe(57); // the byte tokenizer of dummy:tiny, found through the lease's modelRef
  await new Promise((r) => setTimeout(r, 100));
  await router.syncIndex();
  const before = await predicted();
  const again = await client.completions.create({ model: 'tiny-served', prompt: PROMPT, max_tokens: 2, temperature: 0 });
  expect(again.usage?.prompt_tokens_details?.cached_tokens).toBe(48);
  // the router found those blocks in the index: its hashes and the worker's agree on the name
  expect((await predicted()) - before).toBe(48);
  expect(await (workers[3] as RunningWorker).metrics.registry.metrics()).toMatch(/model="tiny-served"/);
});

describe('chat completions', () => {
  // Qwen2's template (as Qwen2-7B-Instruct ships it), given to a router with --chat-template
  const QWEN2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  let chatRouter: RunningRouter;
  let chat: OpenAI;
  beforeAll(async () => {
    const file = join(tempDir('kcache-chat-template-'), 'qwen2.jinja');
    writeFileSync(file, QWEN2);
    chatRouter = await startRouter({ apiKeys: null, port: 0, redisUrl: redis.url, refreshMs: 100, httpPort: 0, chatTemplate: file });
    await chatRouter.refresh();
    chat = new OpenAI({ baseURL: `http://127.0.0.1:${chatRouter.httpPort}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  afterAll(async () => {
    await chatRouter?.close();
  });

  test('the template renders the conversation; no BOS is added beyond what the template writes', async () => {
    const rendered = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
    const r = await chat.chat.completions.create({
      model: M,
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 5,
      temperature: 0,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]?.message.role).toBe('assistant');
    expect(typeof r.choices[0]?.message.content).toBe('string');
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(r.usage?.prompt_tokens).toBe(Buffer.byteLength(rendered)); // byte tokenizer, no BOS
    // the same prompt as a completion of the rendered text: the same tokens after its BOS
    const same = await chat.completions.create({ model: M, prompt: rendered, max_tokens: 5, temperature: 0 });
    expect(same.usage?.prompt_tokens).toBe(Buffer.byteLength(rendered) + 1);
  });

  test('streamed: the first delta names the role; content parts are joined', async () => {
    const stream = await chat.chat.completions.create({
      model: M,
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hel' },
            { type: 'text', text: 'lo' },
          ],
        },
      ],
      max_tokens: 6,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: { role?: string; content?: string | null }[] = [];
    let usage: OpenAI.Completions.CompletionUsage | undefined | null;
    for await (const c of stream) {
      for (const ch of c.choices) deltas.push(ch.delta);
      if (c.usage) usage = c.usage;
    }
    expect(deltas[0]?.role).toBe('assistant');
    expect(deltas.slice(1).every((d) => d.role === undefined)).toBe(true);
    const rendered = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n';
    expect(usage).toMatchObject({ prompt_tokens: Buffer.byteLength(rendered), completion_tokens: 6 });
  });

  test('chat logprobs: one entry a token, with its bytes and top_logprobs alternatives', async () => {
    const r = await chat.chat.completions.create({
      model: M,
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 4,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = r.choices[0]?.logprobs?.content ?? [];
    expect(content).toHaveLength(4);
    expect(content.map((c) => c.token).join('')).toBe(r.choices[0]?.message.content);
    for (const c of content) {
      expect(c.bytes).toEqual([...Buffer.from(c.token, 'utf8')]);
      expect(c.top_logprobs).toHaveLength(2);
      expect(c.logprob).toBeCloseTo(Math.max(...c.top_logprobs.map((t) => t.logprob)), 5);
    }
  });

  test('the typed gRPC client sends the same conversation: same prompt, same greedy text, logprobs exposed', async () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const viaHttp = await chat.chat.completions.create({ model: M, messages, max_completion_tokens: 6, temperature: 0 });
    const grpcClient = new KcacheClient(chatRouter.address);
    try {
      const r = await grpcClient.generate({ model: M, messages, maxTokens: 6, temperature: 0, logprobs: 2 });
      expect(r.usage.promptTokens).toBe(viaHttp.usage?.prompt_tokens);
      expect(r.text).toBe(viaHttp.choices[0]?.message.content);
      expect(r.logprobs).toHaveLength(6);
      for (const [i, l] of r.logprobs.entries()) {
        expect(l.tokenId).toBe(r.tokenIds[i]);
        expect(l.top).toHaveLength(2);
        expect(l.logprob).toBeLessThanOrEqual(0);
        expect(l.logprob).toBeCloseTo(Math.max(...l.top.map((t) => t.logprob)), 5); // greedy: the likeliest token
      }
      const empty = await grpcClient.generate({ model: M, messages: [] }).catch((x) => x);
      expect(empty).toMatchObject({ code: 'INVALID_ARGUMENT', details: 'chat.messages: at least one message is required' });
      const noRole = await grpcClient.generate({ model: M, messages: [{ role: '', content: 'x' }] }).catch((x) => x);
      expect(noRole).toMatchObject({ code: 'INVALID_ARGUMENT', details: 'chat.messages[0].role: required' });
    } finally {
      grpcClient.close();
    }
    const plain = new KcacheClient(router.address, { apiKey: KEY });
    try {
      const e = await plain.generate({ model: M, messages }).catch((x) => x);
      expect(e).toBeInstanceOf(KcacheError);
      expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/^chat\.messages: .* has no chat template/) });
    } finally {
      plain.close();
    }
  });

  test('a model without a chat template is a 400 naming messages', async () => {
    const e = await client.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Hi' }] }).catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.error).toMatchObject({ param: 'messages', message: expect.stringMatching(/has no chat template/) });
  });
});
