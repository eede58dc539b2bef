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
    // and with full credit the tiers tie, so the lower id wins
    expect(cacheAware({ hostHitCredit: 1 })(snap([device, { ...host, id: 'w3' }]), req)?.worker).toBe('w2');
    expect(cacheAware({ hostHitCredit: 1 })(snap([{ ...device, id: 'w3' }, host]), req)?.worker).toBe('w1');
  });
  test('no match anywhere: least cost (= least loaded), ties to the lower id', () => {
    expect(p(snap([w('w2', 0), w('w1', 0), w('w3', 1)]), req)).toEqual({ worker: 'w1', reason: 'least_cost' });
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
