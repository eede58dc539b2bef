import { describe, expect, test } from 'vitest';
import { cacheAware, consistentHash, leastLoadedPolicy, makePolicy, powerOfTwo, randomPolicy, roundRobin } from './index.js';
import type { WorkerView } from './types.js';

const snap = (workers: WorkerView[]) => ({ workers, blockSize: 16 });
const req = { blockHashes: ['a', 'b', 'c', 'd'], promptTokens: 70 };
const w = (id: string, load: number, matchedBlocks = 0): WorkerView => ({ id, load, matchedBlocks });

describe('cache_aware', () => {
  const p = cacheAware();
  test('the longest cached prefix wins at equal load', () => {
    expect(p(snap([w('w1', 0, 1), w('w2', 0, 4), w('w3', 0)]), req)).toEqual({ worker: 'w2', reason: 'cache_hit' });
  });
  test('load is weighed against cached tokens', () => {
    // w2 saves 48 more tokens than w1 but carries 1 more request (worth 64 tokens)
    expect(p(snap([w('w1', 0, 1), w('w2', 1, 4)]), req)).toEqual({ worker: 'w1', reason: 'cache_hit' });
  });
  test('a device-tier hit is credited more than a host-tier (KCache) hit of the same length', () => {
    const host = { ...w('w1', 0, 4), deviceBlocks: 0 };
    const device = { ...w('w2', 0, 4), deviceBlocks: 4 };
    expect(p(snap([host, device]), req)?.worker).toBe('w2');
    // but a longer host-tier prefix still beats a shorter device-tier one: 64 x 0.8 > 16
    expect(p(snap([host, { ...w('w2', 0, 1), deviceBlocks: 1 }]), req)?.worker).toBe('w1');
    // and with full credit the tiers tie: the same worker whatever the ids' order in the view
    const full = cacheAware({ hostHitCredit: 1 });
    const tie = full(snap([device, { ...host, id: 'w3' }]), req)?.worker;
    expect(full(snap([{ ...host, id: 'w3' }, device]), req)?.worker).toBe(tie);
  });
  test('offload tiers: a pooled hit beats a reload of the same length, RAM beats disk, a reload beats recomputing', () => {
    const pooled = { ...w('w1', 0, 4), deviceBlocks: 4 };
    const ram = { ...w('w2', 0, 4), deviceBlocks: 0, offloadRamBlocks: 4 };
    const disk = { ...w('w3', 0, 4), deviceBlocks: 0, offloadDiskBlocks: 4 };
    const none = w('w4', 0, 0);
    expect(p(snap([ram, pooled, disk]), req)?.worker).toBe('w1');
    expect(p(snap([disk, ram]), req)?.worker).toBe('w2');
    expect(p(snap([none, disk]), req)?.worker).toBe('w3');
    // mixed: 1 pooled + 3 in RAM against 2 pooled: 16 + 48 x credit > 32 when credit > 1/3
    const mixed = { ...w('w5', 0, 4), deviceBlocks: 1, offloadRamBlocks: 3 };
    expect(p(snap([{ ...w('w6', 0, 2), deviceBlocks: 2 }, mixed]), req)?.worker).toBe('w5');
    expect(cacheAware({ offloadRamCredit: 0.2 })(snap([{ ...w('w6', 0, 2), deviceBlocks: 2 }, mixed]), req)?.worker).toBe('w6');
  });
  test('no match anywhere: the least loaded, then the least occupied cache', () => {
    expect(p(snap([w('w2', 1), w('w1', 0), w('w3', 1)]), req)).toEqual({ worker: 'w1', reason: 'new_prefix' });
    const occ = (id: string, occupancy: number): WorkerView => ({ ...w(id, 0), occupancy });
    expect(p(snap([occ('w1', 0.5), occ('w2', 0.1), occ('w3', 0.3)]), req)).toEqual({ worker: 'w2', reason: 'new_prefix' });
  });
  test('new prefixes on equal workers spread by their first block, not by worker id', () => {
    const equal = snap([w('w1', 0), w('w2', 0), w('w3', 0)]);
    const chosen = Array.from({ length: 60 }, (_, i) => p(equal, { blockHashes: [`prefix-${i}`, 'x'], promptTokens: 40 })?.worker);
    const counts = ['w1', 'w2', 'w3'].map((id) => chosen.filter((c) => c === id).length);
    expect(Math.min(...counts)).toBeGreaterThan(10); // 60 prefixes over 3 workers: none starved
    // a decision depends on the view, not on the order the workers come in or on the router
    const reversed = snap([w('w3', 0), w('w2', 0), w('w1', 0)]);
    for (let i = 0; i < 20; i++) {
      const r = { blockHashes: [`prefix-${i}`], promptTokens: 40 };
      expect(cacheAware()(reversed, r)).toEqual(p(equal, r));
    }
  });
  test("six prefixes one at a time, each raising its worker's occupancy, use all three workers", () => {
    const occupancy = new Map([
      ['w1', 0],
      ['w2', 0],
      ['w3', 0],
    ]);
    for (let i = 0; i < 6; i++) {
      const view = [...occupancy].map(([id, o]): WorkerView => ({ ...w(id, 0), occupancy: o }));
      const d = p(snap(view), { blockHashes: [`system-prompt-${i}`], promptTokens: 200 });
      occupancy.set(d?.worker as string, (occupancy.get(d?.worker as string) as number) + 0.01);
    }
    expect([...occupancy.values()]).toEqual([0.02, 0.02, 0.02]);
  });
  test('a hot prefix spills past the balance threshold', () => {
    const hot = cacheAware({ loadCostTokens: 1 });
    expect(hot(snap([w('w1', 5, 4), w('w2', 0)]), req)?.reason).toBe('cache_hit');
    expect(hot(snap([w('w1', 9, 4), w('w2', 0)]), req)).toEqual({ worker: 'w2', reason: 'balance_spill' });
  });
  test('excluded workers are never chosen; none left gives null', () => {
    expect(p(snap([w('w1', 0, 4), w('w2', 3)]), req, new Set(['w1']))?.worker).toBe('w2');
    expect(p(snap([w('w1', 0, 4)]), req, new Set(['w1']))).toBeNull();
  });
});

describe('baselines', () => {
  const s = snap([w('w1', 2), w('w2', 0), w('w3', 1)]);
  test('round_robin cycles in id order and skips exclusions', () => {
    const p = roundRobin();
    expect([p(s, req), p(s, req), p(s, req), p(s, req)].map((d) => d?.worker)).toEqual(['w1', 'w2', 'w3', 'w1']);
    expect(p(s, req, new Set(['w2', 'w3']))?.worker).toBe('w1');
  });
  test('least_loaded, random, power_of_two', () => {
    expect(leastLoadedPolicy()(s, req)).toEqual({ worker: 'w2', reason: 'least_loaded' });
    expect(randomPolicy(() => 0.99)(s, req)?.worker).toBe('w3');
    const seq = [0.0, 0.5]; // picks w1 and w2: w2 is less loaded
    expect(powerOfTwo(() => seq.shift() as number)(s, req)?.worker).toBe('w2');
  });
  test('consistent_hash keys on more than the first block', () => {
    const p = consistentHash();
    // every prompt shares its first block (a system prompt) and differs after it
    const keys = Array.from(
      { length: 60 },
      (_, i) => p(s, { blockHashes: ['system', `user-${i}`, `more-${i}`], promptTokens: 48 })?.worker,
    );
    expect(new Set(keys).size).toBe(3);
    // prompts that agree on their first four blocks stay together
    const a = p(s, { blockHashes: ['b0', 'b1', 'b2', 'b3', 'tail-a'], promptTokens: 80 });
    expect(p(s, { blockHashes: ['b0', 'b1', 'b2', 'b3', 'tail-b', 'tail-c'], promptTokens: 96 })).toEqual(a);
  });
  test('consistent_hash keeps a key on its worker and moves few keys when one leaves', () => {
    const p = consistentHash();
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const before = keys.map((k) => p(s, { blockHashes: [k], promptTokens: 16 })?.worker);
    expect(keys.map((k) => p(s, { blockHashes: [k], promptTokens: 16 })?.worker)).toEqual(before);
    const after = keys.map((k) => p(s, { blockHashes: [k], promptTokens: 16 }, new Set(['w3']))?.worker);
    const moved = before.filter((b, i) => b !== after[i]);
    expect(moved.every((b) => b === 'w3')).toBe(true);
    expect(new Set(before).size).toBe(3);
  });
  test('makePolicy knows every name', () => {
    for (const n of ['cache_aware', 'round_robin', 'least_loaded', 'power_of_two', 'random', 'consistent_hash'] as const) {
      expect(makePolicy(n)(s, req)).not.toBeNull();
    }
  });
});
