// Batched, paged and chunked steps give the same logits as one sequence at a time, and
// sequences can share prefix blocks read-only.
import { Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';

let engine: Engine;
const V = 512;
beforeAll(async () => {
  engine = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 256, threads: 2 });
});
afterAll(() => engine.dispose());

function ids(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 131 + seed * 977) % 500)));
}

/** Logits after every token, computed one whole prefill in blocks [base, base+1, ...]. */
async function alone(tokens: number[], table: number[]): Promise<Float32Array> {
  const [l] = await engine.step([{ tokens, startPos: 0, blockTable: table, allLogits: true }]);
  return (l as Float32Array).slice();
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('equivalences', () => {
  test('chunked prefill (chunks of 7) equals one prefill', async () => {
    const t = ids(50, 1);
    const full = await alone(t, range(0, 4));
    const rows: Float32Array[] = [];
    for (let s = 0; s < t.length; s += 7) {
      const [l] = await engine.step([{ tokens: t.slice(s, s + 7), startPos: s, blockTable: range(10, 4), allLogits: true }]);
      rows.push((l as Float32Array).slice());
    }
    const chunked = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
    let o = 0;
    for (const r of rows) {
      chunked.set(r, o);
      o += r.length;
    }
    expect(chunked).toEqual(full);
  });

  test('prefill then token-by-token decode equals one prefill', async () => {
    const t = ids(40, 2);
    const full = await alone(t, range(0, 3));
    await engine.step([{ tokens: t.slice(0, 20), startPos: 0, blockTable: range(20, 3) }]);
    for (let p = 20; p < 40; p++) {
      const [l] = await engine.step([{ tokens: [t[p] as number], startPos: p, blockTable: range(20, 3) }]);
      expect(l).toEqual(full.subarray(p * V, (p + 1) * V));
    }
  });

  test('long contexts: one prefill equals prefill, chunked prefill and decode (several attention chunks)', async () => {
    // dummy:tiny reaches 2,048 positions: rows past 512 split their context into chunks, and a
    // prefill's rows go through the attention in groups of consecutive positions; each row must
    // still compute exactly what it computes alone
    const tiny = await Engine.load(resolveModel('dummy:tiny'), { numBlocks: 80, threads: 2 });
    try {
      const t = Array.from({ length: 1100 }, (_, i) => 3 + ((i * 131) % 500));
      const table = range(0, 70);
      const [whole] = await tiny.step([{ tokens: t, startPos: 0, blockTable: table, allLogits: true }]);
      const tv = 512;
      const [part] = await tiny.step([{ tokens: t.slice(0, 1000), startPos: 0, blockTable: table }]);
      expect(part).toEqual((whole as Float32Array).subarray(999 * tv, 1000 * tv));
      const [chunk] = await tiny.step([{ tokens: t.slice(1000, 1050), startPos: 1000, blockTable: table, allLogits: true }]);
      expect(chunk).toEqual((whole as Float32Array).subarray(1000 * tv, 1050 * tv));
      for (let p = 1050; p < 1100; p++) {
        const [l] = await tiny.step([{ tokens: [t[p] as number], startPos: p, blockTable: table }]);
        expect(l).toEqual((whole as Float32Array).subarray(p * tv, (p + 1) * tv));
      }
    } finally {
      tiny.dispose();
    }
  });

  test('scattered, non-contiguous block tables equal contiguous ones', async () => {
    const t = ids(45, 3);
    const contiguous = await alone(t, range(0, 3));
    const scattered = await alone(t, [200, 7, 131]);
    expect(scattered).toEqual(contiguous);
  });

  test('a batch of sequences of different lengths equals each run alone', async () => {
    const seqs = [ids(33, 4), ids(1, 5), ids(17, 6), ids(64, 7)];
    const tables = [range(0, 3), range(3, 1), range(4, 2), range(6, 4)];
    const solo: Float32Array[] = [];
    for (let i = 0; i < seqs.length; i++) solo.push(await alone(seqs[i] as number[], range(100, 4)));
    const batched = await engine.step(
      seqs.map((tokens, i) => ({ tokens, startPos: 0, blockTable: tables[i] as number[], allLogits: true })),
    );
    batched.forEach((l, i) => {
      expect(l).toEqual(solo[i]);
    });
    // mixed step: decodes of some sequences beside a prefill of another
    const next = await engine.step([
      { tokens: [9], startPos: 33, blockTable: tables[0] as number[] },
      { tokens: ids(20, 8), startPos: 0, blockTable: range(50, 2) },
      { tokens: [11], startPos: 17, blockTable: tables[2] as number[] },
    ]);
    const ref0 = await alone([...(seqs[0] as number[]), 9], range(100, 3));
    const ref2 = await alone([...(seqs[2] as number[]), 11], range(100, 3));
    expect(next[0]).toEqual(ref0.subarray(33 * V, 34 * V));
    expect(next[2]).toEqual(ref2.subarray(17 * V, 18 * V));
  });

  test('two sequences share a full prefix block read-only', async () => {
    const prefix = ids(16, 9);
    const a = [...prefix, ...ids(10, 10).slice(1)];
    const b = [...prefix, ...ids(12, 11).slice(1)];
    const refA = await alone(a, range(100, 2));
    const refB = await alone(b, range(110, 2));
    // A owns block 30 (the prefix) and 31; B reuses block 30 and computes only its own suffix.
    await engine.step([{ tokens: a, startPos: 0, blockTable: [30, 31] }]);
    const [bSuffix, aAgain] = await engine.step([
      { tokens: b.slice(16), startPos: 16, blockTable: [30, 32], allLogits: true },
      { tokens: [a.at(-1) as number], startPos: a.length - 1, blockTable: [30, 31] },
    ]);
    expect(bSuffix).toEqual(refB.subarray(16 * V));
    expect(aAgain).toEqual(refA.subarray((a.length - 1) * V));
  });
});

describe('bad input is rejected before any work and loses nothing', () => {
  test.each([
    [{ tokens: [1, 600], startPos: 0, blockTable: [0] }, /^chunks\[1\]\.tokens\[1\] = 600 is outside the vocabulary/],
    [{ tokens: [1, -1], startPos: 0, blockTable: [0] }, /^chunks\[1\]\.tokens\[1\] = -1/],
    [{ tokens: [1, 2.5], startPos: 0, blockTable: [0] }, /^chunks\[1\]\.tokens\[1\] = 2.5/],
    [{ tokens: [1], startPos: 16, blockTable: [0] }, /^chunks\[1\]\.blockTable has 1 blocks but position 16 needs 2/],
    [{ tokens: [1], startPos: 0, blockTable: [256] }, /^chunks\[1\]\.blockTable\[0\] = 256 is outside the pool of 256 blocks/],
    [
      { tokens: [1], startPos: 512, blockTable: range(0, 33) },
      /^chunks\[1\]\.tokens reach position 512, outside the context \(max_seq_len 512\)/,
    ],
    [{ tokens: [], startPos: 0, blockTable: [0] }, /^chunks\[1\]\.tokens is empty/],
  ])('%o', async (chunk, message) => {
    const t = ids(20, 12);
    const before = await alone(t, range(60, 2));
    await expect(engine.step([{ tokens: [1, 2], startPos: 0, blockTable: [61] }, chunk])).rejects.toThrow(message);
    // the failed step wrote nothing: the cache in blocks 60-61 still gives the same next-token logits
    const [after] = await engine.step([{ tokens: [t.at(-1) as number], startPos: 19, blockTable: range(60, 2) }]);
    expect(after).toEqual(before.subarray(19 * V));
  });

  test('the error is an InvalidStepError', async () => {
    await expect(engine.step([{ tokens: [9999], startPos: 0, blockTable: [0] }])).rejects.toMatchObject({ name: 'InvalidStepError' });
  });

  test('the native step refuses a logits buffer of the wrong size or type, naming it', () => {
    // (the addon's own check, under Engine.step, which always passes the right buffer)
    const native = (engine as unknown as { native: { step(batch: Record<string, unknown>): Promise<void> } }).native;
    const batch = (logits: unknown) =>
      native.step({
        tokens: Int32Array.of(1),
        positions: Int32Array.of(0),
        rowSeq: Int32Array.of(0),
        blockTables: Int32Array.of(0),
        tableOffset: Int32Array.of(0),
        tableLength: Int32Array.of(1),
        outputRows: Int32Array.of(0),
        logits,
      });
    expect(() => batch(new Float32Array(V - 1))).toThrow(
      /^step: logits must be a Float32Array of outputRows.length x vocab \(512\) floats/,
    );
    expect(() => batch(new Float64Array(V))).toThrow(/^step: logits must be/);
    expect(() => batch(undefined)).toThrow(/^step: logits must be/);
  });
});

describe('logits', () => {
  test("each step's logits are its own: a later step leaves an earlier step's as they were", async () => {
    const [first] = await engine.step([{ tokens: ids(12, 4), startPos: 0, blockTable: range(80, 1) }]);
    const copy = (first as Float32Array).slice();
    await engine.step([{ tokens: ids(12, 5), startPos: 0, blockTable: range(81, 1) }]);
    expect(first).toEqual(copy);
    expect(copy.every(Number.isFinite)).toBe(true);
  });
});

describe('asynchronous steps', () => {
  test('one step in flight at a time: a second concurrent call is refused, the first completes', async () => {
    const first = engine.step([{ tokens: ids(64, 13), startPos: 0, blockTable: range(0, 4) }]);
    await expect(engine.step([{ tokens: [1], startPos: 0, blockTable: [9] }])).rejects.toThrow(/already in flight/);
    const [l] = await first;
    expect(l?.length).toBe(V);
  });

  test('the event loop keeps running during a long step', async () => {
    const big = await Engine.load(resolveModel('dummy:smol135:bf16'), { numBlocks: 16, threads: 2 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    await big.step([{ tokens: ids(128, 14).map((x) => x % 259), startPos: 0, blockTable: range(0, 8) }]);
    const ms = performance.now() - t0;
    clearInterval(timer);
    big.dispose();
    expect(ms).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThan(ms / 10); // a blocked loop would tick at most once
  });
});

describe('half-precision weights', () => {
  // Long prefills widen weight panels to f32 once; short steps widen in registers. Same sums.
  test.each(['bf16', 'f16'])('dummy:tiny:%s: a 48-token prefill equals chunks of 5 and single tokens', async (dtype) => {
    const e = await Engine.load(resolveModel(`dummy:tiny:${dtype}`), { numBlocks: 16, threads: 2 });
    const t = ids(48, 15).map((x) => x % 256);
    const [full] = await e.step([{ tokens: t, startPos: 0, blockTable: range(0, 3), allLogits: true }]);
    const v = e.vocabSize;
    for (let s = 0; s < 40; s += 5) {
      const [l] = await e.step([{ tokens: t.slice(s, s + 5), startPos: s, blockTable: range(3, 3), allLogits: true }]);
      expect(l).toEqual((full as Float32Array).subarray(s * v, (s + 5) * v));
    }
    for (let p = 40; p < 48; p++) {
      const [l] = await e.step([{ tokens: [t[p] as number], startPos: p, blockTable: range(3, 3) }]);
      expect(l).toEqual((full as Float32Array).subarray(p * v, (p + 1) * v));
    }
    e.dispose();
  });
});

describe('thread counts', () => {
  // Every task of every parallel loop runs exactly once, on whichever thread claims it (each
  // thread its own share first, then the others'), and no output depends on which thread: the
  // same steps on 1, 2, 3 and 8 threads give the same logits bit for bit. 8 threads on this
  // 2-core machine leaves shares empty or stolen from while their owner is off the CPU.
  test.each(['f32', 'q4_0'])('dummy:tiny:%s: the same logits on 1, 2, 3 and 8 threads', async (dtype) => {
    const spec = resolveModel(`dummy:tiny:${dtype}`);
    const run = async (threads: number) => {
      const e = await Engine.load(spec, { numBlocks: 32, threads });
      try {
        const t = ids(40, 16).map((x) => x % 256);
        const [prefill] = await e.step([{ tokens: t, startPos: 0, blockTable: range(0, 3), allLogits: true }]);
        const seqs = [0, 1, 2, 3].map((s) => ({
          tokens: ids(9, 20 + s).map((x) => x % 256),
          startPos: 0,
          blockTable: range(4 + 2 * s, 2),
        }));
        await e.step(seqs);
        const decode = await e.step(seqs.map((q, s) => ({ tokens: [5 + s], startPos: 9, blockTable: q.blockTable })));
        return [(prefill as Float32Array).slice(), ...decode.map((l) => (l as Float32Array).slice())];
      } finally {
        e.dispose();
      }
    };
    const one = await run(1);
    for (const threads of [2, 3, 8]) expect(await run(threads)).toEqual(one);
  });
});
