// `kcache up --workers 3 --model dummy:tiny` as a new user runs it: six distinct long system
// prompts sent one at a time start on all three workers (not all on one), and follow-ups of each
// stay on their worker with cache hits; a worker killed under it is restarted, and the cluster
// serves throughout.
import type { ChildProcess } from 'node:child_process';
import { KcacheClient } from '@kcache/client';
import { leaseKey, parseLease } from '@kcache/protocol';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { spawnKcache, UP_FREE_PORTS } from './helpers/processes.js';

let proc: ChildProcess;
let pids: number[] = [];
let redisUrl = '';
let client: KcacheClient;

beforeAll(async () => {
  const up = spawnKcache(['up', '--workers', '3', '--model', 'dummy:tiny', ...UP_FREE_PORTS, '--threads', '1', '--json']);
  proc = up.proc;
  const ready = (await up.ready) as { routers: { address: string }[]; pids: number[]; redisUrl: string };
  pids = ready.pids;
  redisUrl = ready.redisUrl;
  client = new KcacheClient(ready.routers[0]?.address);
  // the router lists workers from their leases: wait until it knows all three
  for (let i = 0; i < 100; i++) {
    if ((await client.listModels().catch(() => []))[0]?.workers === 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}, 90_000);

afterAll(async () => {
  client?.close();
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

test('six distinct prefixes one at a time use all three workers; follow-ups hit on their worker', async () => {
  // a shared chat-template-like header (one block), then a distinct ~200-byte system prompt each
  const system = (i: number) =>
    `<|system|>\nAssistant ${i}: ${`you answer questions about subject number ${i} with care and detail; `.repeat(3)}`;
  const ask = (text: string) => client.generate({ text, maxTokens: 2, temperature: 0, ignoreEos: true });
  const home = new Map<number, string>();
  for (let i = 0; i < 6; i++) home.set(i, (await ask(`${system(i)}Q: hello?`)).workerId);
  expect(new Set(home.values())).toEqual(new Set(['w1', 'w2', 'w3']));
  for (let i = 0; i < 6; i++) {
    const r = await ask(`${system(i)}Q: and what else?`);
    expect(r.workerId).toBe(home.get(i));
    expect(r.usage.cachedTokens).toBeGreaterThanOrEqual(Math.floor(system(i).length / 16) * 16);
  }
}, 60_000);

test('a worker killed under kcache up is restarted; requests are served meanwhile', async () => {
  const redis = new Redis(redisUrl);
  const instanceOf = async () => parseLease((await redis.get(leaseKey('w2'))) ?? '')?.instance;
  const before = await instanceOf();
  expect(before).toBeTruthy();
  const w2 = pids[1] as number; // the workers come first in the ready line's pids
  process.kill(w2, 'SIGKILL');
  const during = await Promise.all(
    Array.from({ length: 6 }, (_, i) => client.generate({ text: `request ${i} while a worker is down`, maxTokens: 2, ignoreEos: true })),
  );
  expect(during.every((r) => r.finishReason === 'length')).toBe(true);
  expect(proc.exitCode).toBeNull();
  // back: its old lease lapses within 3 s, then a new process claims w2
  let now = before;
  for (let i = 0; i < 200 && (now === before || now === undefined); i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await instanceOf();
  }
  redis.disconnect();
  expect(now).toBeTruthy();
  expect(now).not.toBe(before);
  // and the router lists it again at its next read of the leases
  let listed = 0;
  for (let i = 0; i < 50 && listed !== 3; i++) {
    listed = (await client.listModels())[0]?.workers ?? 0;
    if (listed !== 3) await new Promise((r) => setTimeout(r, 100));
  }
  expect(listed).toBe(3);
  const after = await client.generate({ text: 'and after', maxTokens: 2, ignoreEos: true });
  expect(after.finishReason).toBe('length');
}, 60_000);
