import { describe, expect, test } from 'vitest';
import { BlockManager, type KvEvent } from './block-manager.js';

function make(n = 4) {
  const events: KvEvent[] = [];
  return { bm: new BlockManager(n, 16, (e) => events.push(e)), events };
}

describe('BlockManager', () => {
  test('allocate and release plain blocks', () => {
    const { bm, events } = make();
    const a = bm.allocate(3) as number[];
    expect(a).toHaveLength(3);
    expect(new Set(a).size).toBe(3);
    expect(bm.available).toBe(1);
    expect(bm.allocate(2)).toBeNull();
    expect(bm.available).toBe(1); // a failed allocation changes nothing
    bm.release(a);
    expect(bm.available).toBe(4);
    expect(events).toEqual([]);
  });

  test('registered blocks are found by hash prefix and shared by reference', () => {
    const { bm, events } = make();
    const [b0, b1] = bm.allocate(2) as number[];
    bm.register(b0 as number, 'h0', null);
    bm.register(b1 as number, 'h1', 'h0');
    expect(bm.lookup(['h0', 'h1', 'h2'])).toEqual([b0, b1]);
    expect(bm.lookup(['hx', 'h1'])).toEqual([]);
    bm.acquire([b0 as number]);
    bm.release([b0 as number, b1 as number]);
    expect(bm.available).toBe(3); // b0 still referenced once, b1 idle but cached
    expect(bm.usage).toBeCloseTo(0.25);
    expect(events).toEqual([
      { type: 'stored', hashes: ['h0'], parent: null, tier: 'device' },
      { type: 'stored', hashes: ['h1'], parent: 'h0', tier: 'device' },
    ]);
  });

  test('free blocks go first, then idle cached blocks in LRU order, each eviction reported', () => {
    const { bm, events } = make(3);
    const [a, b, c] = bm.allocate(3) as number[];
    bm.register(a as number, 'A', null);
    bm.register(b as number, 'B', null);
    bm.register(c as number, 'C', null);
    bm.release([b as number]);
    bm.release([a as number]);
    bm.release([c as number]); // LRU order now B, A, C
    bm.acquire(bm.lookup(['A'])); // A in use again
    events.length = 0;
    const got = bm.allocate(1) as number[];
    expect(got).toEqual([b]);
    expect(events).toEqual([{ type: 'removed', hashes: ['B'], tier: 'device' }]);
    expect(bm.lookup(['B'])).toEqual([]);
    expect(bm.allocate(1)).toEqual([c]);
    expect(bm.allocate(1)).toBeNull(); // A is referenced
  });

  test('the first block to cache a hash keeps it; double release is an error', () => {
    const { bm, events } = make();
    const [x, y] = bm.allocate(2) as number[];
    bm.register(x as number, 'H', null);
    bm.register(y as number, 'H', null);
    expect(bm.lookup(['H'])).toEqual([x]);
    expect(events).toHaveLength(1);
    bm.release([y as number]);
    expect(() => bm.release([y as number])).toThrow(/released more often/);
  });

  test('snapshot lists parents before children', () => {
    const { bm } = make();
    const [a, b, c] = bm.allocate(3) as number[];
    bm.register(c as number, 'C', 'B');
    bm.register(a as number, 'A', null);
    bm.register(b as number, 'B', 'A');
    expect(bm.snapshot().map((s) => s.hash)).toEqual(['A', 'B', 'C']);
  });

  test("a released sequence's blocks are evicted tail first, so its prefix start outlives its end", () => {
    const { bm, events } = make(4);
    const seq = bm.allocate(3) as number[];
    seq.forEach((b, i) => {
      bm.register(b, `P${i}`, i === 0 ? null : `P${i - 1}`);
    });
    bm.release(seq);
    events.length = 0;
    bm.allocate(2); // one free block, then one eviction: the last block of the prefix
    expect(events).toEqual([{ type: 'removed', hashes: ['P2'], tier: 'device' }]);
    expect(bm.lookup(['P0', 'P1', 'P2'])).toHaveLength(2);
    bm.allocate(1);
    expect(bm.lookup(['P0', 'P1'])).toHaveLength(1);
  });
});
