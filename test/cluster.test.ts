// The local cluster as users run it: `kcache up` (real processes: its own redis-server, a
// router, two KCache workers), requests through `kcache ask`, a cache hit on a repeated prefix, the
// /metrics of every process, and a clean stop that leaves no process behind.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';
import { tempDir } from './helpers/temp.js';

const MAIN = join(REPO_ROOT, 'packages/cli/dist/main.js');
// ChatML, for `kcache ask --chat` (dummy:tiny ships no chat template)
const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

interface Ready {
  redisUrl: string;
  routers: { id: string; address: string; http: string; metricsPort: number }[];
  workers: { id: string; address: string; metricsPort: number }[];
  pids: number[];
  client: string;
}

function kcache(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let up: ChildProcess;
let ready: Ready;
let exited: Promise<number | null>;
let upStderr = '';

beforeAll(async () => {
  const template = join(tempDir('kcache-cluster-chat-'), 'chatml.jinja');
  writeFileSync(template, CHATML);
  up = spawn(
    process.execPath,
    [
      MAIN,
      'up',
      '--workers',
      '2',
      '--port',
      '0',
      '--worker-port',
      '0',
      '--metrics-port',
      '0',
      '--http-port',
      '0',
      '--chat-template',
      template,
      '--attention',
      'kcache',
      '--kcache-topn',
      '64',
      '--load-cost-tokens',
      '64',
      '--json',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  up.stderr?.on('data', (d: Buffer) => {
    upStderr += d.toString();
  });
  exited = new Promise((r) => up.once('exit', (code) => r(code)));
  ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('kcache up was not ready within 60 s')), 60_000);
    createInterface({ input: up.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.event === 'ready') {
        clearTimeout(timer);
        resolve(m);
      }
    });
    up.once('exit', (code) => reject(new Error(`kcache up exited with ${code}`)));
  });
}, 90_000);

afterAll(async () => {
  if (up.exitCode === null) up.kill('SIGKILL');
  for (const pid of ready?.pids ?? []) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

describe('kcache up + kcache ask', () => {
  test('starts Redis, one router and two workers and prints how to reach them', () => {
    expect(ready.routers).toHaveLength(1);
    expect(ready.workers.map((w) => w.id).sort()).toEqual(['w1', 'w2']);
    expect(ready.pids).toHaveLength(5); // 2 workers, 1 router, 1 batch runner, redis-server
    for (const pid of ready.pids) expect(alive(pid)).toBe(true);
    expect(ready.client).toMatch(/^pnpm -s kcache ask --addr 127\.0\.0\.1:\d+ "/);
    // each worker's model-loading progress, shown as the worker's
    for (const w of ['w1', 'w2'])
      expect(upStderr).toMatch(new RegExp(`^kcache up: worker ${w}: loaded dummy:\\S+: [\\d.]+ MB in [\\d.]+ s$`, 'm'));
  });

  test('answers through the router; a repeated long prefix is a cache hit on the same worker', () => {
    const addr = (ready.routers[0] as { address: string }).address;
    const prompt = 'The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill.';
    const ask = (suffix: string) => {
      const r = kcache('ask', '--addr', addr, '--json', '--max-tokens', '4', '--ignore-eos', '--temperature', '0', `${prompt} ${suffix}`);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout);
    };
    const first = ask('One.');
    expect(first).toMatchObject({ finishReason: 'length', usage: { completionTokens: 4, cachedTokens: 0 } });
    expect(first.tokenIds).toHaveLength(4);
    expect(typeof first.text).toBe('string');
    const second = ask('Two!');
    // the byte tokenizer: BOS + one token per byte, 16-token blocks; the 92-byte prefix spans 5 full blocks
    expect(second.usage.cachedTokens).toBe(80);
    expect(second.workerId).toBe(first.workerId);
    // without --json: the text on stdout, usage and the worker on stderr
    const plain = kcache('ask', '--addr', addr, '--max-tokens', '3', '--ignore-eos', 'Hi');
    expect(plain.code).toBe(0);
    expect(plain.stderr).toMatch(/^\[w[12]\] 3 prompt tokens \(0 cached\), 3 generated, finish length/);
  });

  test('ask --chat sends a conversation through the chat template; --logprobs reports each token', () => {
    const addr = (ready.routers[0] as { address: string }).address;
    const args = ['ask', '--addr', addr, '--json', '--max-tokens', '4', '--ignore-eos', '--temperature', '0'];
    const r = kcache(...args, '--chat', '--system', 'Be brief.', '--logprobs', '2', 'Hi');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const rendered = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
    expect(out.usage.promptTokens).toBe(Buffer.byteLength(rendered)); // the byte tokenizer; the template adds no BOS
    expect(out.logprobs).toHaveLength(4);
    for (const [i, l] of out.logprobs.entries()) {
      expect(l.tokenId).toBe(out.tokenIds[i]);
      expect(l.top).toHaveLength(2);
      expect(l.top[0].tokenId).toBe(l.tokenId); // greedy: the likeliest alternative is the token
    }
    // the same text sent plain is tokenized with the tokenizer's BOS
    const plain = kcache(...args, rendered);
    expect(JSON.parse(plain.stdout).usage.promptTokens).toBe(Buffer.byteLength(rendered) + 1);
    expect(JSON.parse(plain.stdout).logprobs).toBeUndefined();
    // in text mode the logprobs go to stderr, one line a token
    const text = kcache('ask', '--addr', addr, '--max-tokens', '3', '--ignore-eos', '--chat', '--logprobs', '1', 'Hi');
    expect(text.code).toBe(0);
    expect(text.stderr.match(/^ {2}token \d+ logprob -?\d+\.\d{4} {2}top: \d+ -?\d+\.\d{4}$/gm)).toHaveLength(3);
    const lone = kcache('ask', '--addr', addr, '--system', 'x', 'Hi');
    expect(lone).toMatchObject({ code: 2, stderr: expect.stringMatching(/--system needs --chat/) });
    const many = kcache('ask', '--addr', addr, '--logprobs', '21', 'Hi');
    expect(many).toMatchObject({ code: 2, stderr: expect.stringMatching(/--logprobs must be at most 20, got 21/) });
  });

  test('kcache health reports SERVING for the router and each worker', () => {
    for (const a of [...ready.routers, ...ready.workers].map((x) => x.address)) {
      const r = kcache('health', '--addr', a);
      expect(r.stdout).toBe('SERVING\n');
      expect(r.code).toBe(0);
    }
  });

  test('router and workers serve /metrics with the routing and cache counters', async () => {
    const router = await (await fetch(`http://127.0.0.1:${ready.routers[0]?.metricsPort}/metrics`)).text();
    expect(router).toMatch(/kcache_router_decisions_total\{[^}]*reason="cache_hit"[^}]*\} [1-9]/);
    expect(router).toMatch(/kcache_router_redis_up\{[^}]*\} 1/);
    expect(router).toMatch(/kcache_router_live_workers\{[^}]*\} 2/);
    // KCache workers (--attention kcache): both tiers reported
    const w1 = await (await fetch(`http://127.0.0.1:${ready.workers[0]?.metricsPort}/metrics`)).text();
    expect(w1).toMatch(/kcache_kv_cache_usage_perc\{[^}]*tier="host"/);
    let hits = 0;
    for (const w of ready.workers) {
      const body = await (await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`)).text();
      expect(body).toContain('kcache_time_to_first_token_seconds_bucket');
      hits += Number(/kcache_prefix_cache_hits_total\{[^}]*\} (\d+)/.exec(body)?.[1] ?? 0);
    }
    expect(hits).toBe(80);
  });

  // after the metrics test, whose counts it would change
  test("the router's OpenAI API (the official SDK): models, a completion, and a cached prefix reported as OpenAI does", async () => {
    const http = ready.routers[0]?.http as string;
    expect(http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const openai = new OpenAI({ baseURL: `${http}/v1`, apiKey: 'unused: kcache up runs without keys', maxRetries: 0 });
    const [model] = (await openai.models.list()).data.map((m) => m.id);
    expect(model).toBe('dummy:smol135:bf16');
    const prompt = 'A long shared system prompt that every request of this conversation begins with, and then a question.';
    const first = await openai.completions.create({ model: model as string, prompt, max_tokens: 3, temperature: 0 });
    expect(first.choices[0]?.finish_reason).toBeDefined();
    const again = await openai.completions.create({ model: model as string, prompt, max_tokens: 3, temperature: 0 });
    expect(again.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    expect(again.choices[0]?.text).toBe(first.choices[0]?.text);
  });

  test('a bad request is one line and exit 1; a bad flag is exit 2', () => {
    const addr = (ready.routers[0] as { address: string }).address;
    const bad = kcache('ask', '--addr', addr, '--kcache-topn', '0', 'x');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--kcache-topn must be an integer >= 1/);
    const model = kcache('ask', '--addr', addr, '--model', 'nope', 'x');
    expect(model.code).toBe(1);
    expect(model.stderr).toMatch(/^kcache: NOT_FOUND: model: no live worker serves 'nope'\n$/);
  });

  test("a batch runs on up's batch runner: submit --wait prints the finished batch", () => {
    const file = join(tempDir('kcache-cluster-batch-'), 'requests.jsonl');
    const line = (id: string, prompt: string) =>
      JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/completions', body: { prompt, max_tokens: 3, temperature: 0 } });
    writeFileSync(file, `${line('a', 'Once upon a time')}\n${line('b', 'Once upon a time, far away')}\n${line('c', 'Hello')}\n`);
    const r = kcache('batch', 'submit', file, '--wait', '--json', '--redis-url', ready.redisUrl);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'completed', counts: { total: 3, completed: 3, failed: 0 } });
    const out = kcache('batch', 'results', JSON.parse(r.stdout).id, '--redis-url', ready.redisUrl);
    expect(
      out.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).custom_id),
    ).toEqual(['a', 'b', 'c']);
  });

  test('SIGTERM stops every process it started', async () => {
    up.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of ready.pids) expect(alive(pid)).toBe(false);
    const gone = kcache('ask', '--addr', (ready.routers[0] as { address: string }).address, '--timeout-ms', '2000', 'x');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
    const health = kcache('health', '--addr', (ready.routers[0] as { address: string }).address);
    expect(health.code).toBe(1);
    expect(health.stderr).toMatch(/^kcache: 127\.0\.0\.1:\d+: UNAVAILABLE/);
  }, 30_000);
});

describe('kcache up and serve router refuse bad flags with one line', () => {
  test.each([
    [['up', '--workers', '0'], /--workers must be an integer >= 1/],
    [['up', '--policy', 'best'], /--policy must be one of/],
    [['up', '--attention', 'kcache', '--kcache-topn=-3'], /--kcache-topn must be a positive/],
    [['up', '--host-hit-credit', '2'], /--host-hit-credit must be in \[0, 1\], got 2/],
    [['up', '--offload-disk-credit', '1.2'], /--offload-disk-credit must be in \[0, 1\], got 1.2/],
    [['up', '--offload-bytes=-1'], /--offload-bytes must be a size in bytes/],
    [['up', '--cache-threshold', '1.5'], /--cache-threshold must be in \[0, 1\], got 1.5/],
    [['up', '--redis-url', 'localhost:6379'], /--redis-url: expected redis:\/\/host:port or redis-cluster:\/\/host:port,host:port/],
    [['serve', 'router', '--port', '0', '--redis-url', 'redis-cluster://a:1,b'], /--redis-url: 'b' is not host:port/],
    [
      ['serve', 'router', '--port', '0', '--redis-url', 'redis://127.0.0.1:1', '--load-cost-tokens=-1'],
      /--load-cost-tokens must be >= 0, got -1/,
    ],
    [
      ['serve', 'router', '--port', '0', '--redis-url', 'redis://127.0.0.1:1'],
      /^kcache: --api-keys-file FILE \(or KCACHE_API_KEYS_FILE\) is required; --no-auth serves without authentication$/m,
    ],
    [
      ['serve', 'router', '--port', '0', '--redis-url', 'redis://127.0.0.1:1', '--api-keys-file', '/no/such'],
      /--api-keys-file: \/no\/such: no such file/,
    ],
    [
      ['serve', 'router', '--port', '0', '--redis-url', 'redis://127.0.0.1:1', '--api-keys-file', '/no/such', '--no-auth'],
      /give --api-keys-file or --no-auth, not both/,
    ],
    [['up', '--api-keys-file', '/no/such'], /--api-keys-file: \/no\/such: no such file/],
  ])('%j', (args, message) => {
    const r = kcache(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
