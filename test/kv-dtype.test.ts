// The KV cache in 16 and 8 bits: greedy agreement with an f32 cache on the trained stories260K,
// next-token logits close to it, capacity per byte, and the exactness properties that hold
// whatever the dtype (a prefix cached in one step or two; KCache with N covering the context).
import { Engine, type EngineOptions, generate, KV_DTYPES, type KvDtype } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { afterAll, describe, expect, test } from 'vitest';
import { f16ToF32 } from './helpers/half.js';
import { randomIds } from './helpers/ids.js';
import { STORIES_260K } from './helpers/paths.js';
import { runKcache } from './helpers/processes.js';

const engines: Engine[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
});
const spec = resolveModel(STORIES_260K);
async function load(opts: EngineOptions): Promise<Engine> {
  const e = await Engine.load(spec, { numBlocks: 64, threads: 2, ...opts });
  engines.push(e);
  return e;
}
const table = (n: number) => Array.from({ length: Math.ceil(n / 16) + 1 }, (_, i) => i);
const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0 };

describe('KV cache dtypes on stories260K', () => {
  // Greedy agreement as top-1 agreement along the f32 cache's own greedy text (teacher forcing: each
  // position is judged on the same context), over 8 prompts x 48 tokens; also how far free-running
  // greedy text gets before its first divergence (one flip changes everything after it).
  test.each(['f16', 'bf16', 'q8_0'] as const)('%s: greedy agreement with an f32 cache, and logits within tolerance', async (kvDtype) => {
    const ref = await load({ kvDtype: 'f32' });
    const eng = await load({ kvDtype });
    expect(eng.info().kvDtype).toBe(kvDtype);
    let agree = 0;
    let before = 0;
    let total = 0;
    let worst = 0;
    for (let s = 0; s < 8; s++) {
      const prompt = [1, ...randomIds(8, 512, 100 + s)];
      const a = await generate(ref, { promptIds: prompt, maxTokens: 48, sampling: GREEDY, ignoreEos: true });
      const b = await generate(eng, { promptIds: prompt, maxTokens: 48, sampling: GREEDY, ignoreEos: true });
      let i = 0;
      while (i < a.tokenIds.length && a.tokenIds[i] === b.tokenIds[i]) i++;
      before += i;
      const text = [...prompt, ...a.tokenIds.slice(0, -1)];
      const [lr] = await ref.step([{ tokens: text, startPos: 0, blockTable: table(text.length), allLogits: true }]);
      const [le] = await eng.step([{ tokens: text, startPos: 0, blockTable: table(text.length), allLogits: true }]);
      for (let p = prompt.length - 1; p < text.length; p++) {
        const r = (lr as Float32Array).subarray(p * 512, (p + 1) * 512);
        const e = (le as Float32Array).subarray(p * 512, (p + 1) * 512);
        let ta = 0;
        let tb = 0;
        let scale = 0;
        for (let t = 0; t < 512; t++) {
          if ((r[t] as number) > (r[ta] as number)) ta = t;
          if ((e[t] as number) > (e[tb] as number)) tb = t;
          scale = Math.max(scale, Math.abs(r[t] as number));
        }
        for (let t = 0; t < 512; t++) worst = Math.max(worst, Math.abs((r[t] as number) - (e[t] as number)) / scale);
        agree += ta === tb ? 1 : 0;
        total += 1;
      }
    }
    console.log(
      `KV ${kvDtype}: top-1 agreement with f32 KV ${((100 * agree) / total).toFixed(1)}% (${agree}/${total}); free-running greedy before first divergence ${((100 * before) / total).toFixed(1)}%; worst logit error ${(100 * worst).toFixed(2)}% of the largest`,
    );
    // >= 99% for 16-bit (the bar); q8_0: its measured figure (docs/BENCHMARKS.md) with margin
    expect(agree / total).toBeGreaterThanOrEqual(kvDtype === 'q8_0' ? 0.9 : 0.99);
    // measured 2026-12-01: 0.6% (f16), 3.7% (bf16), 12% (q8_0) of the largest logit
    expect(worst).toBeLessThan(kvDtype === 'q8_0' ? 0.2 : kvDtype === 'bf16' ? 0.06 : 0.01);
  });

  test('capacity: the same bytes hold 2x the blocks in 16 bits and 3.76x in q8_0', async () => {
    const bytes = 4 << 20;
    const blocks: Record<string, number> = {};
    for (const kvDtype of KV_DTYPES) {
      const e = await Engine.load(spec, { kvCacheBytes: bytes, threads: 2, kvDtype });
      blocks[kvDtype] = e.info().numBlocks;
      expect(e.info().kvBytesPerBlock * e.info().numBlocks).toBeLessThanOrEqual(bytes);
      e.dispose();
    }
    const f32 = blocks.f32 as number;
    // (each count is the bytes over the block's bytes, rounded down)
    expect((blocks.f16 as number) / f32).toBeCloseTo(2, 1);
    expect(blocks.bf16).toBe(blocks.f16);
    // a row of 32 values: 128 bytes in f32, 34 in q8_0
    expect((blocks.q8_0 as number) / f32).toBeCloseTo(128 / 34, 1);
  });

  test.each(['f16', 'q8_0'] as KvDtype[])(
    '%s: a prefix cached by an earlier step gives the same logits as one prefill; KCache with N covering the context is exact',
    async (kvDtype) => {
      const ids = [1, ...randomIds(47, 512, 3)];
      const one = await load({ kvDtype });
      const [whole] = await one.step([{ tokens: ids, startPos: 0, blockTable: table(48), allLogits: true }]);
      const two = await load({ kvDtype });
      await two.step([{ tokens: ids.slice(0, 32), startPos: 0, blockTable: table(48) }]);
      const [rest] = await two.step([{ tokens: ids.slice(32), startPos: 32, blockTable: table(48), allLogits: true }]);
      expect(Array.from(rest as Float32Array)).toEqual(Array.from((whole as Float32Array).subarray(32 * 512)));

      // decode rows: KCache with N >= the context is bit for bit full attention, V in the host tier
      const full = await load({ kvDtype });
      const kc = await load({ kvDtype, attention: 'kcache', kcache: { topN: 64, fullLayers: 1 } });
      for (let p = 0; p < 24; p++) {
        const chunk = { tokens: [ids[p] as number], startPos: p, blockTable: table(24) };
        const [a] = await full.step([chunk]);
        const [b] = await kc.step([chunk]);
        expect(Array.from(b as Float32Array)).toEqual(Array.from(a as Float32Array));
      }
    },
  );

  test.each(['f16', 'q8_0'] as KvDtype[])(
    '%s: fillKvRandom stores the f32 fill rounded to the dtype, in both KCache tiers',
    async (kvDtype) => {
      const ref = await load({ kvDtype: 'f32' });
      const eng = await load({ kvDtype });
      const kc = await load({ kvDtype, attention: 'kcache', kcache: { topN: 64, fullLayers: 1 } });
      // a decode row at position 40 attends to 40 filled positions in every layer
      const chunk = { tokens: [7], startPos: 40, blockTable: table(41) };
      const out: Float32Array[] = [];
      for (const e of [ref, eng, kc]) {
        e.fillKvRandom(5);
        const [l] = await e.step([chunk]);
        out.push(Float32Array.from(l as Float32Array));
      }
      const [a, b, c] = out as [Float32Array, Float32Array, Float32Array];
      // the host-resident V tier holds the same rows as the device pool
      expect(Array.from(c)).toEqual(Array.from(b));
      let scale = 0;
      let worst = 0;
      for (let t = 0; t < a.length; t++) scale = Math.max(scale, Math.abs(a[t] as number));
      for (let t = 0; t < a.length; t++) worst = Math.max(worst, Math.abs((a[t] as number) - (b[t] as number)) / scale);
      // the same values as the f32 fill, rounded: a different fill would be off by O(1)
      expect(worst).toBeLessThan(kvDtype === 'q8_0' ? 0.05 : 0.005);
    },
  );

  // KCache's top-N path (N below the context) reads a 16-bit cache's kept value rows a head at a
  // time, widened to f32: the result of an f32 cache holding the same (widened) values, but for
  // the decoded token's own K and V, which each cache stores in its dtype.
  // (f16: bf16's coarser rounding of that token can flip a near-tie in the top-N selection)
  test.each(['f16'] as const)('%s: KCache top-N matches an f32 cache holding the same values', async (kvDtype) => {
    const kcache = { topN: 8, fullLayers: 0 };
    const half = await load({ kvDtype, attention: 'kcache', kcache });
    const wide = await load({ kvDtype: 'f32', attention: 'kcache', kcache });
    half.fillKvRandom(9);
    const blocks = table(41);
    const bytes = half.readBlocks(blocks);
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    const values = Float32Array.from(bits, f16ToF32);
    wide.writeBlocks(blocks, new Uint8Array(values.buffer));
    for (const pos of [40, 33]) {
      const chunk = { tokens: [7], startPos: pos, blockTable: blocks };
      const [a] = (await wide.step([chunk])) as [Float32Array];
      const [b] = (await half.step([chunk])) as [Float32Array];
      let scale = 0;
      let worst = 0;
      for (let t = 0; t < a.length; t++) scale = Math.max(scale, Math.abs(a[t] as number));
      for (let t = 0; t < a.length; t++) worst = Math.max(worst, Math.abs((a[t] as number) - (b[t] as number)) / scale);
      expect(worst).toBeLessThan(1e-3); // measured 1-2e-4; the wrong head's values: O(1)
    }
    // and top-N keeps 8 of 41 positions here: full attention over the same cache differs
    const full = await load({ kvDtype });
    full.writeBlocks(blocks, bytes);
    const [f] = await full.step([{ tokens: [7], startPos: 40, blockTable: blocks }]);
    const [k] = await half.step([{ tokens: [7], startPos: 40, blockTable: blocks }]);
    expect(Array.from(k as Float32Array)).not.toEqual(Array.from(f as Float32Array));
  });

  test('--kv-cache-dtype: a bad value is one line and exit 2', async () => {
    const bad = await runKcache('generate', '--model', STORIES_260K, '--prompt-ids', '1', '--kv-cache-dtype', 'q4_0');
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("kcache: --kv-cache-dtype must be one of f32, f16, bf16, q8_0, got 'q4_0'");
    const ok = await runKcache(
      'generate',
      '--model',
      STORIES_260K,
      '--prompt-ids',
      '1',
      '--max-tokens',
      '4',
      '--kv-cache-dtype',
      'q8_0',
      '--json',
    );
    expect(ok.code).toBe(0);
  }, 60_000);
});
