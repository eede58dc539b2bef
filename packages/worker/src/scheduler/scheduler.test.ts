import { describe, expect, test } from 'vitest';
import { BlockManager } from './block-manager.js';
import { type BlockSource, SchedRequest, Scheduler, type StepPlan } from './scheduler.js';

const extra = { modelId: 'm' };
const seq = (n: number, base = 0) => Array.from({ length: n }, (_, i) => base + i + 1);

function setup(blocks = 16, maxNumSeqs = 8, maxBatchedTokens = 64) {
  const bm = new BlockManager(blocks, 4);
  return { bm, s: new Scheduler(bm, { maxNumSeqs, maxBatchedTokens }) };
}

/** Runs a step as the engine loop would: commit, then append a fake sampled token. */
function run(s: Scheduler, plan: StepPlan, next = 100): void {
  s.commit(plan);
  for (const it of plan.items) if (it.sample) s.append(it.req, next);
}

describe('Scheduler', () => {
  test('chunked prefill under the token budget, FCFS, then decodes first', () => {
    const { s } = setup(16, 8, 10);
    const a = new SchedRequest('a', seq(14), extra, 0);
    const b = new SchedRequest('b', seq(5, 50), extra, 1);
    s.add(a);
    s.add(b);
    let p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.startPos, i.tokens.length, i.sample])).toEqual([['a', 0, 10, false]]);
    run(s, p);
    p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.startPos, i.tokens.length, i.sample])).toEqual([
      ['a', 10, 4, true],
      ['b', 0, 5, true],
    ]);
    run(s, p);
    p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.startPos, i.tokens.length, i.sample])).toEqual([
      ['a', 14, 1, true],
      ['b', 5, 1, true],
    ]);
  });

  test('a second request reuses the cached full blocks of a shared prefix, not the last token', () => {
    const { s, bm } = setup();
    const a = new SchedRequest('a', seq(12), extra, 0);
    s.add(a);
    run(s, s.schedule());
    s.finish(a);
    expect(bm.cachedBlocks).toBe(3);
    const b = new SchedRequest('b', [...seq(8), 70, 71, 72], extra, 1);
    s.add(b);
    const p = s.schedule();
    expect(b.cachedTokens).toBe(8);
    expect(p.items[0]?.startPos).toBe(8);
    const c = new SchedRequest('c', seq(12), extra, 2); // identical prompt: last block recomputed
    s.add(c);
    expect(s.schedule().items.find((i) => i.req === c)?.startPos).toBe(8);
    expect(c.cachedTokens).toBe(8);
    const d = new SchedRequest('d', seq(12), { modelId: 'm', cacheSalt: 'other' }, 3);
    s.add(d);
    s.schedule();
    expect(d.cachedTokens).toBe(0);
  });

  test('preemption by recompute when blocks run out; the preempted request resumes', () => {
    const { s, bm } = setup(4, 8, 64);
    const a = new SchedRequest('a', seq(8), extra, 0); // 2 blocks
    const b = new SchedRequest('b', seq(8, 20), extra, 1); // 2 blocks
    s.add(a);
    s.add(b);
    run(s, s.schedule()); // both prefilled and sampled: 9 tokens each, the next decode needs a third block
    const p = s.schedule();
    expect(p.preempted.map((r) => r.id)).toEqual(['b']);
    expect(p.items.map((i) => i.req.id)).toEqual(['a']);
    expect(s.waiting[0]).toBe(b);
    expect(b.blockTable).toEqual([]);
    run(s, p);
    s.finish(a);
    const r = s.schedule();
    expect(r.items[0]?.req).toBe(b);
    expect(r.items[0]?.tokens.length).toBeGreaterThan(0);
    expect(b.tokens).toHaveLength(9); // its sampled token is kept and recomputed
    expect(bm.available).toBeGreaterThanOrEqual(0);
  });

  test('removing a request frees its blocks; caps on running sequences', () => {
    const { s, bm } = setup(16, 1, 64);
    const a = new SchedRequest('a', seq(9), extra, 0);
    const b = new SchedRequest('b', seq(9, 40), extra, 1);
    s.add(a);
    s.add(b);
    const p = s.schedule();
    expect(p.items.map((i) => i.req.id)).toEqual(['a']);
    expect(bm.available).toBe(13);
    s.remove(a);
    expect(bm.available).toBe(16);
    expect(s.schedule().items.map((i) => i.req.id)).toEqual(['b']);
  });
  test('priorities: a better class gets the budget first, queues ahead, and is the last preempted', () => {
    const s = new Scheduler(new BlockManager(16, 4), { maxNumSeqs: 8, maxBatchedTokens: 10, maxBackgroundPrefillTokens: 10 });
    const batch = new SchedRequest('batch', seq(14), extra, 0);
    batch.priority = 2;
    s.add(batch);
    let p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.tokens.length])).toEqual([['batch', 10]]);
    run(s, p);
    // an interactive request arrives while the batch request is half prefilled: its prefill goes
    // first and alone (a worse class's prefill chunk would lengthen the step); then the batch
    // request's chunk rides along with the interactive decode
    const live = new SchedRequest('live', seq(6, 40), extra, 1);
    s.add(live);
    p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.tokens.length])).toEqual([['live', 6]]);
    run(s, p);
    p = s.schedule();
    expect(p.items.map((i) => [i.req.id, i.tokens.length])).toEqual([
      ['live', 1],
      ['batch', 4],
    ]);
    run(s, p);
    // the queue: better priorities ahead of earlier arrivals, arrival order within a class
    const later = new SchedRequest('low', seq(2, 80), extra, 2);
    later.priority = 5;
    const urgent = new SchedRequest('urgent', seq(2, 90), extra, 3);
    s.add(later);
    s.add(urgent);
    expect(s.waiting.map((r) => r.id)).toEqual(['urgent', 'low']);
  });

  test('while interactive traffic is around, background prefill is capped per step (a 32nd of the budget by default); interactive is not', () => {
    let now = 0;
    const s = new Scheduler(new BlockManager(16, 4), { maxNumSeqs: 8, maxBatchedTokens: 96, now: () => now });
    const a = new SchedRequest('a', seq(10), extra, 0);
    a.priority = 1;
    const b = new SchedRequest('b', seq(10, 30), extra, 1);
    b.priority = 1;
    s.add(a);
    s.add(b);
    const live = new SchedRequest('live', seq(40, 60), extra, 2);
    s.add(live);
    let p = s.schedule();
    // the interactive prefill goes alone (background work only decodes beside it)
    expect(p.items.map((i) => [i.req.id, i.tokens.length])).toEqual([['live', 40]]);
    run(s, p);
    p = s.schedule();
    // live decodes; 96 / 32 = 3 background prefill tokens for all background classes
    expect(p.items.map((i) => [i.req.id, i.tokens.length])).toEqual([
      ['live', 1],
      ['a', 3],
    ]);
    run(s, p);
    s.remove(live);
    now += 9_999; // the window (10 s after the last interactive arrival) is still open
    expect(s.schedule().items.map((i) => [i.req.id, i.tokens.length])).toEqual([['a', 3]]);
    now += 1; // closed: background prefill takes the whole budget
    expect(s.schedule().items.map((i) => [i.req.id, i.tokens.length])).toEqual([
      ['a', 7],
      ['b', 10],
    ]);
  });

  test('the background prefill cap and the interactive window are settings', () => {
    for (const [cap, windowMs, chunk] of [
      [undefined, undefined, 16],
      [64, undefined, 64],
      [64, 0, 300], // no window: only a queued or running interactive request caps background prefill
    ] as const) {
      const s = new Scheduler(new BlockManager(64, 16), {
        maxNumSeqs: 8,
        maxBatchedTokens: 512,
        maxBackgroundPrefillTokens: cap,
        interactiveWindowMs: windowMs,
        now: () => 0,
      });
      const live = new SchedRequest('live', seq(1), extra, 0);
      s.add(live);
      s.remove(live);
      const a = new SchedRequest('a', seq(300), extra, 1);
      a.priority = 1;
      s.add(a);
      expect(s.schedule().items.map((i) => [i.req.id, i.tokens.length])).toEqual([['a', chunk]]);
    }
  });

  test('a batch alone prefills at full speed', () => {
    const s = new Scheduler(new BlockManager(64, 16), { maxNumSeqs: 8, maxBatchedTokens: 512 });
    const a = new SchedRequest('a', seq(300), extra, 0);
    a.priority = 1;
    s.add(a);
    expect(s.schedule().items.map((i) => [i.req.id, i.tokens.length])).toEqual([['a', 300]]);
  });

  test('out of blocks, the worst class is preempted, not the latest arrival', () => {
    const { s } = setup(4, 8, 64);
    const low = new SchedRequest('low', seq(6), extra, 0);
    low.priority = 3;
    const high = new SchedRequest('high', seq(6, 20), extra, 1);
    s.add(low);
    s.add(high);
    run(s, s.schedule()); // each holds 2 of the 4 blocks (6 prompt tokens + 1)
    let p = s.schedule();
    run(s, p);
    // decodes need a third block each: the low-priority sequence gives its blocks up
    for (let k = 0; k < 3 && p.preempted.length === 0; k++) {
      p = s.schedule();
      run(s, p);
    }
    expect(p.preempted.map((r) => r.id)).toEqual(['low']);
    expect(s.running.map((r) => r.id)).toEqual(['high']);
  });

  test('a prefix that continues below the pool is copied into the first fresh blocks, registered and counted cached', () => {
    const bm = new BlockManager(16, 4);
    // what lies below the pool: the blocks of hashes it was given, and where each was loaded
    const held = new Map<string, number>();
    const loads: [string, number][] = [];
    let failAt = Number.POSITIVE_INFINITY;
    const below: BlockSource = {
      lookup: (hashes) => {
        let n = 0;
        while (n < hashes.length && held.has(hashes[n] as string)) n++;
        return n;
      },
      load: (hashes, blocks) => {
        let n = 0;
        for (; n < hashes.length && n < failAt; n++) loads.push([hashes[n] as string, blocks[n] as number]);
        return n;
      },
    };
    const s = new Scheduler(bm, { maxNumSeqs: 8, maxBatchedTokens: 64 }, below);
    const a = new SchedRequest('a', seq(17), extra, 0);
    s.add(a);
    run(s, s.schedule());
    const hashes = [...a.blockHashes]; // its 4 full blocks
    s.finish(a);
    expect(hashes).toHaveLength(4);
    // evicted from the pool (taking every block evicts the idle cached ones), held below
    bm.release(bm.allocate(bm.available) as number[]);
    expect(bm.lookup(hashes)).toHaveLength(0);
    for (const h of hashes) held.set(h, 1);
    const b = new SchedRequest('b', seq(17), extra, 1);
    s.add(b);
    const p = s.schedule();
    expect(b.cachedTokens).toBe(16); // 4 blocks of 4 below the pool; the last token's block computed
    expect(b.reloadedTokens).toBe(16);
    expect(p.items[0]?.startPos).toBe(16);
    expect(loads.map(([h]) => h)).toEqual(hashes);
    expect(loads.map(([, blk]) => blk)).toEqual(b.blockTable.slice(0, 4));
    expect(bm.lookup(hashes)).toEqual(b.blockTable.slice(0, 4)); // registered in the pool
    // a load that fails part way: the rest is computed
    run(s, p);
    s.finish(b);
    bm.release(bm.allocate(bm.available) as number[]);
    loads.length = 0;
    failAt = 2;
    const c = new SchedRequest('c', seq(17), extra, 2);
    s.add(c);
    expect(s.schedule().items[0]?.startPos).toBe(8);
    expect(c.cachedTokens).toBe(8);
    expect(c.reloadedTokens).toBe(8);
  });
});
