import { makePolicy } from '@kcache/routing';
import { describe, expect, test } from 'vitest';
import { type Candidate, decide, peerFor, type RouteChoice, type Router, type RouteState, route } from './route.js';

const router = (maxAttempts = 3): Router => ({ policy: makePolicy('cache_aware'), policyName: 'cache_aware', maxAttempts });
const req = { hashes: ['h0', 'h1', 'h2', 'h3'], promptTokens: 70, blockSize: 16 };
const cand = (id: string, load = 0, cachedBlocks = 0): Candidate => ({ id, load, cachedBlocks, numBlocks: 100 });
const state = (
  candidates: Candidate[],
  matches: Record<string, [number, number?]> | null,
  recent: Record<string, number> = {},
): RouteState => ({
  candidates,
  matches: matches
    ? new Map(
        Object.entries(matches).map(([w, [m, d]]) => [
          w,
          { matchedBlocks: m, deviceBlocks: d ?? m, offloadRamBlocks: 0, offloadDiskBlocks: 0 },
        ]),
      )
    : null,
  recent: new Map(Object.entries(recent)),
});
const served = (): Promise<'done'> => Promise.resolve('done');

describe('route()', () => {
  test('a cache hit goes to the worker holding the longest prefix, with its predicted cached tokens', async () => {
    const s = state([cand('w1'), cand('w2'), cand('w3')], { w1: [1], w2: [4], w3: [0] });
    const out = await route(router(), req, () => s, served);
    expect(out.served).toEqual({
      worker: 'w2',
      policy: 'cache_aware',
      reason: 'cache_hit',
      predictedCachedTokens: 64,
      newBlocks: 0,
      peer: null, // nobody holds more than w2
    });
    expect(out.tried).toEqual([]);
  });

  test('a hot prefix spills to the idle worker past the balance guard', async () => {
    // a cheap load cost keeps the hot worker the cheapest: the guard is what moves the request
    const hot: Router = { ...router(), policy: makePolicy('cache_aware', { loadCostTokens: 1 }) };
    const s = state([cand('w1', 12), cand('w2', 0)], { w1: [4], w2: [0] });
    // the spill names the hot worker as the peer to pull the prefix from
    expect(decide(hot, req, s, new Set())).toMatchObject({ worker: 'w2', reason: 'balance_spill', peer: { worker: 'w1', blocks: 4 } });
    expect(decide(hot, req, state([cand('w1', 8), cand('w2', 0)], { w1: [4], w2: [0] }), new Set())).toMatchObject({
      worker: 'w1',
      peer: null,
    });
  });

  test('a device-tier hit beats a host-tier hit of the same length; blocks only recently routed count as host tier', async () => {
    const s = state([cand('w1'), cand('w2')], { w1: [4, 0], w2: [4, 4] });
    expect(decide(router(), req, s, new Set())?.worker).toBe('w2');
    // the index knows nothing yet, but this router just sent the prefix to w1
    const recent = state([cand('w1'), cand('w2')], { w1: [0], w2: [0] }, { w1: 4 });
    // and it adds no block there (occupancy counts each new block once, not once per request)
    expect(decide(router(), req, recent, new Set())).toMatchObject({
      worker: 'w1',
      reason: 'cache_hit',
      predictedCachedTokens: 0,
      newBlocks: 0,
    });
    const partial = state([cand('w1'), cand('w2')], { w1: [1], w2: [0] }, { w1: 3 });
    expect(decide(router(), req, partial, new Set())).toMatchObject({ worker: 'w1', newBlocks: 1 });
  });

  test('failover: a worker failing before its first token is retried on the next choice, in cost order, never twice', async () => {
    const s = state([cand('w1'), cand('w2'), cand('w3')], { w1: [4], w2: [2], w3: [0] });
    const seen: string[] = [];
    const out = await route(
      router(),
      req,
      () => s,
      async (c: RouteChoice) => {
        seen.push(c.worker);
        return c.worker === 'w3' ? 'done' : 'retry';
      },
    );
    expect(seen).toEqual(['w1', 'w2', 'w3']);
    expect(out.served?.worker).toBe('w3');
    expect(out.tried).toEqual(['w1', 'w2']);
  });

  test('attempts are bounded; a skipped worker (breaker refused) is not counted as tried', async () => {
    const s = state([cand('w1'), cand('w2'), cand('w3')], { w1: [4], w2: [2], w3: [1] });
    const out = await route(
      router(2),
      req,
      () => s,
      async (c) => (c.worker === 'w1' ? 'skip' : 'retry'),
    );
    expect(out).toEqual({ served: null, tried: ['w2'] });
    expect(await route(router(), req, () => state([], {}), served)).toEqual({ served: null, tried: [] });
  });

  test('a new prefix spreads: distinct first blocks over equal workers use them all, and an emptier cache wins', async () => {
    const equal = [cand('w1'), cand('w2'), cand('w3')];
    const used = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const d = decide(router(), { ...req, hashes: [`p${i}`, 'x'] }, state(equal, {}), new Set());
      expect(d?.reason).toBe('new_prefix');
      used.add(d?.worker as string);
    }
    expect(used).toEqual(new Set(['w1', 'w2', 'w3']));
    const occupied = [cand('w1', 0, 50), cand('w2', 0, 10), cand('w3', 0, 30)];
    expect(decide(router(), req, state(occupied, {}), new Set())?.worker).toBe('w2');
  });

  test('two router instances with the same view make the same decisions', async () => {
    const a = router();
    const b = router();
    for (let i = 0; i < 40; i++) {
      const candidates = [cand('w1', i % 3, i), cand('w2', (i + 1) % 3, 2 * i), cand('w3', 1, 40 - i)];
      const s = state(candidates, { w1: [i % 5], w2: [(i * 7) % 5], w3: [0] });
      const r = { ...req, hashes: [`k${i}`, 'a', 'b', 'c'] };
      expect(decide(b, r, s, new Set())).toEqual(decide(a, r, s, new Set()));
      // and the order candidates are listed in does not matter
      expect(decide(b, r, { ...s, candidates: [...candidates].reverse() }, new Set())).toEqual(decide(a, r, s, new Set()));
    }
  });

  test('peer: the candidate holding the longest prefix beyond the chosen worker, or none', () => {
    const s = state([cand('w1'), cand('w2'), cand('w3')], { w1: [1], w2: [3], w3: [2] });
    expect(peerFor('w1', s)).toEqual({ worker: 'w2', blocks: 3 });
    expect(peerFor('w3', s)).toEqual({ worker: 'w2', blocks: 3 });
    expect(peerFor('w2', s)).toBeNull();
    // a worker that is not a candidate (dead, other model) is never named
    expect(peerFor('w1', state([cand('w1'), cand('w3')], { w1: [1], w2: [3], w3: [2] }))).toEqual({ worker: 'w3', blocks: 2 });
    expect(peerFor('w1', state([cand('w1'), cand('w2')], null))).toBeNull();
  });

  test('without the index (lookup timed out) it routes least loaded and says so', async () => {
    const s = state([cand('w1', 3), cand('w2', 1)], null);
    expect(decide(router(), req, s, new Set())).toEqual({
      worker: 'w2',
      policy: 'least_loaded_fallback',
      reason: 'index_unavailable',
      predictedCachedTokens: 0,
      newBlocks: 4,
      peer: null,
    });
  });
});
