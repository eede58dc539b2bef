// KCache attention (V in the host tier, top-N at decode) against the float64 reference's top-N
// attention, against the engine's full attention where it must be exact, and its accounting.
import { Engine, type EngineOptions } from '@kcache/engine';
import { type ModelSpec, resolveModel } from '@kcache/models';
import { afterAll, describe, expect, test } from 'vitest';
import { randomIds } from './helpers/ids.js';
import { checkLongContext } from './helpers/long-context.js';
import { STORIES_260K } from './helpers/paths.js';
import { type ReferenceKCache, referenceLogits, worstRelError } from './reference/forward.js';
import { llama2cWeights } from './reference/llama2c-weights.js';

const engines: Engine[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
});

async function load(spec: ModelSpec, opts: EngineOptions = {}): Promise<Engine> {
  const e = await Engine.load(spec, { numBlocks: 64, threads: 2, ...opts });
  engines.push(e);
  return e;
}

const table = (n: number, first = 0) => Array.from({ length: Math.ceil(n / 16) + 1 }, (_, i) => first + i);

/** Feeds ids one token per step (every step a decode row) and returns each step's logits. */
async function decodeEach(engine: Engine, ids: readonly number[], topN?: number, first = 0): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let p = 0; p < ids.length; p++) {
    const [l] = await engine.step([{ tokens: [ids[p] as number], startPos: p, blockTable: table(ids.length, first), topN }]);
    out.push(Float32Array.from(l as Float32Array));
  }
  return out;
}

describe('top-N attention against the float64 reference', () => {
  const spec = resolveModel(STORIES_260K);
  const { config, source } = llama2cWeights(STORIES_260K);
  const ids = randomIds(48, 512, 11);
  const cases: ReferenceKCache[] = [
    { topN: 4, fullLayers: 0, renormalize: true },
    { topN: 8, fullLayers: 1, renormalize: true },
    { topN: 6, fullLayers: 2, renormalize: false },
  ];
  for (const k of cases)
    test(`stories260K N=${k.topN} L=${k.fullLayers} renormalize=${k.renormalize}`, async () => {
      const engine = await load(spec, { attention: 'kcache', kcache: k });
      const got = await decodeEach(engine, ids);
      const ref = referenceLogits(config, source, ids, k);
      expect(worstRelError(got, ref)).toBeLessThan(1e-4);
      // and the reference's top-N really differs from full attention here, so the test can fail
      const full = referenceLogits(config, source, ids);
      expect(worstRelError(got, full, k.topN + 1)).toBeGreaterThan(1e-3);
    });

  test('dummy:tiny (GQA 4/2) N=5, fractional N', async () => {
    const tiny = resolveModel('dummy:tiny');
    const tinyIds = randomIds(40, 512, 5);
    const engine = await load(tiny, { attention: 'kcache', kcache: { topN: 5, fullLayers: 0 } });
    const W = (name: string) => engine.readWeight(name);
    const ref = referenceLogits(tiny.config, W, tinyIds, { topN: 5, fullLayers: 0, renormalize: true });
    expect(worstRelError(await decodeEach(engine, tinyIds), ref)).toBeLessThan(1e-4);
    // N = ceil(0.25 × context) at every position
    const frac = await load(tiny, { attention: 'kcache', kcache: { topNFraction: 0.25, fullLayers: 0 } });
    const fracRef = referenceLogits(tiny.config, W, tinyIds, { topN: 1, topNFraction: 0.25, fullLayers: 0, renormalize: true });
    expect(worstRelError(await decodeEach(frac, tinyIds), fracRef)).toBeLessThan(1e-4);
  });
});

describe('long contexts: several attention chunks, sampled top-N threshold', () => {
  const cases: (ReferenceKCache | undefined)[] = [
    undefined,
    { topN: 5, fullLayers: 1, renormalize: true },
    { topN: 100, fullLayers: 1, renormalize: false },
  ];
  for (const k of cases)
    test(k ? `N=${k.topN} L=${k.fullLayers} renormalize=${k.renormalize}` : 'full attention', () => checkLongContext(k));
});

describe('exactness', () => {
  const spec = resolveModel(STORIES_260K);
  const ids = randomIds(70, 512, 7);

  test('N >= context equals full attention bit for bit; prefill chunks are full attention', async () => {
    const full = await load(spec);
    const kc = await load(spec, { attention: 'kcache', kcache: { topN: 512 } });
    expect(await decodeEach(kc, ids)).toEqual(await decodeEach(full, ids));
    // a per-request N above the context is exact too, on an engine whose default N is small
    const small = await load(spec, { attention: 'kcache', kcache: { topN: 4 } });
    expect(await decodeEach(small, ids, 1000)).toEqual(await decodeEach(full, ids));
    // a 70-token prefill chunk attends to everything whatever N is
    const chunk = { tokens: ids, startPos: 0, blockTable: table(ids.length), allLogits: true };
    const [a] = await small.step([chunk]);
    const [b] = await full.step([chunk]);
    expect(a).toEqual(b);
  });

  test('batched decode rows equal the same rows decoded alone', async () => {
    const kc = await load(spec, { attention: 'kcache', kcache: { topN: 6, fullLayers: 1 } });
    const seqs = [randomIds(40, 512, 1), randomIds(29, 512, 2), randomIds(53, 512, 3)];
    const firsts = [0, 10, 20];
    for (const [i, s] of seqs.entries()) await kc.step([{ tokens: s.slice(0, -1), startPos: 0, blockTable: table(s.length, firsts[i]) }]);
    const batched = await kc.step(
      seqs.map((s, i) => ({ tokens: [s.at(-1) as number], startPos: s.length - 1, blockTable: table(s.length, firsts[i]) })),
    );
    for (const [i, s] of seqs.entries()) {
      const [alone] = await kc.step([{ tokens: [s.at(-1) as number], startPos: s.length - 1, blockTable: table(s.length, firsts[i]) }]);
      expect(batched[i]).toEqual(alone);
    }
    // and a lower per-request N changes the result (the override reaches the kernel)
    const s0 = seqs[0] as number[];
    const [lowN] = await kc.step([{ tokens: [s0.at(-1) as number], startPos: s0.length - 1, blockTable: table(s0.length), topN: 2 }]);
    expect(lowN).not.toEqual(batched[0]);
  });
});

describe('capacity and configuration', () => {
  test('the device tier holds twice the blocks for the same budget; the host tier holds V', async () => {
    const spec = resolveModel('dummy:tiny');
    const budget = 1 << 20;
    const full = await load(spec, { numBlocks: undefined, kvCacheBytes: budget });
    const kc = await load(spec, { numBlocks: undefined, kvCacheBytes: budget, attention: 'kcache', kcache: { fullLayers: 0 } });
    const fi = full.info();
    const ki = kc.info();
    expect(fi.attention).toBe('full');
    expect(fi.kvHostBytesPerBlock).toBe(0);
    expect(ki.attention).toBe('kcache');
    expect(ki.kcache).toEqual({ topN: 256, topNFraction: 0, fullLayers: 0, renormalize: true });
    expect(ki.kvDeviceBytesPerBlock * 2).toBe(fi.kvDeviceBytesPerBlock);
    expect(ki.kvHostBytesPerBlock).toBe(ki.kvDeviceBytesPerBlock);
    expect(ki.numBlocks).toBe(2 * fi.numBlocks);
    // one full layer of two keeps its V on the device: 3 of 4 halves there
    const l1 = await load(spec, { numBlocks: undefined, kvCacheBytes: budget, attention: 'kcache', kcache: { fullLayers: 1 } });
    expect(l1.info().kvDeviceBytesPerBlock).toBe((fi.kvDeviceBytesPerBlock * 3) / 4);
    // a host budget smaller than the device tier's blocks need caps the pool
    const capped = await load(spec, {
      numBlocks: undefined,
      kvCacheBytes: budget,
      kvHostBytes: ki.kvHostBytesPerBlock * 10,
      attention: 'kcache',
      kcache: { fullLayers: 0 },
    });
    expect(capped.info().numBlocks).toBe(10);
  });

  test('fillKvRandom overwrites the cache (for benchmarks) and checks its seed', async () => {
    const kc = await load(resolveModel('dummy:tiny'), { attention: 'kcache', kcache: { topN: 4 } });
    const ids = randomIds(40, 512, 9);
    const last = { tokens: [ids.at(-1) as number], startPos: ids.length - 1, blockTable: table(ids.length) };
    await kc.step([{ tokens: ids.slice(0, -1), startPos: 0, blockTable: table(ids.length) }]);
    const [before] = await kc.step([last]);
    kc.fillKvRandom(3);
    const [after] = await kc.step([last]);
    expect(after).not.toEqual(before);
    expect((after as Float32Array).every(Number.isFinite)).toBe(true);
    expect(() => kc.fillKvRandom(-1)).toThrow(/seed = -1/);
  });

  test('bad settings are refused naming the field', async () => {
    const spec = resolveModel('dummy:tiny');
    await expect(Engine.load(spec, { attention: 'kcache', kcache: { topN: 0 } })).rejects.toThrow(/kcache topN/);
    await expect(Engine.load(spec, { attention: 'kcache', kcache: { fullLayers: 3 } })).rejects.toThrow(/fullLayers.*0\.\.2/);
    await expect(Engine.load(spec, { attention: 'kcache', kcache: { topNFraction: 1.5 } })).rejects.toThrow(/topNFraction/);
    await expect(Engine.load(spec, { attention: 'sparse' as 'full' })).rejects.toThrow(/attention must be/);
    const kc = await load(spec, { attention: 'kcache' });
    await expect(kc.step([{ tokens: [5], startPos: 0, blockTable: [0], topN: 0 }])).rejects.toThrow(/chunks\[0\]\.topN/);
  });
});
