import { benchDecodeAttention, kvBytesPerBlock } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { describe, expect, test } from 'vitest';
import { formatAttention, formatBudget, measureAttention, measureBudgetDecode } from './kcache-bench.js';

describe('decode at a fixed device-tier budget', () => {
  test('each mode runs the most sequences its device tier holds', async () => {
    const spec = resolveModel('dummy:tiny');
    const blocksPerSeq = Math.ceil((256 + 8 + 1) / 16);
    const full = kvBytesPerBlock(spec.config, 16, 'full').device * blocksPerSeq;
    const kc = kvBytesPerBlock(spec.config, 16, 'kcache', 1).device * blocksPerSeq;
    const budget = 4 * full;
    const row = await measureBudgetDecode(spec, 256, budget, [4], 2, 8);
    expect(row.full.batch).toBe(4);
    expect(row.topN).toHaveLength(1);
    expect(row.topN[0]?.batch).toBe(Math.floor(budget / kc));
    expect(row.topN[0]?.batch).toBeGreaterThan(4); // V off the device tier: more sequences fit
    expect(row.full.tps).toBeGreaterThan(0);
    expect(row.topN[0]?.tps).toBeGreaterThan(0);
    expect(formatBudget('dummy:tiny', [row])).toContain(`| 256 | 0.0 GiB | 4 |`);
  });

  test('a budget that holds no sequence, or too many, and contexts outside the model are refused', async () => {
    const tiny = resolveModel('dummy:tiny');
    await expect(measureBudgetDecode(tiny, 256, 1000, [4], 2, 8)).rejects.toThrow(/holds no sequence/);
    await expect(measureBudgetDecode(tiny, 16, 2 ** 30, [4], 2, 8)).rejects.toThrow(/holds \d+ sequences .*at most 256/);
    await expect(measureBudgetDecode(tiny, 0, 2 ** 20, [4], 2, 8)).rejects.toThrow(/context 0 must be in 1\.\.2039/);
    await expect(measureBudgetDecode(tiny, 2040, 2 ** 20, [4], 2, 8)).rejects.toThrow(/context 2040/);
  });
});

describe('decode attention alone', () => {
  const shape = { nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 64 };
  test('runs on every KV cache dtype; the V bytes follow the dtype', async () => {
    const rows = [];
    for (const kv of ['f32', 'f16', 'bf16', 'q8_0'] as const) rows.push(...(await measureAttention(shape, [300], [16], 2, () => {}, kv)));
    for (const r of rows) {
      expect(r.fullSec).toBeGreaterThan(0);
      expect(r.topN[0]?.sec).toBeGreaterThan(0);
    }
    const [f32, f16, bf16, q8] = rows.map((r) => r.fullVBytes);
    expect(f32).toBe(300 * 128 * 4 * 2);
    expect(f16).toBe((f32 as number) / 2);
    expect(bf16).toBe((f32 as number) / 2);
    expect(q8).toBe(300 * 4 * 34 * 2);
    expect(formatAttention([rows[1] as (typeof rows)[0]], shape)).toContain('| 300 |');
  }, 60_000);

  test('a dtype that is not a KV cache dtype is refused by name', async () => {
    await expect(benchDecodeAttention({ ...shape, context: 64, topNs: [0], kvDtype: 'q4_0' })).rejects.toThrow(
      /not a KV cache dtype: q4_0/,
    );
    expect(() => benchDecodeAttention({ ...shape, context: 64, topNs: [0], kvDtype: 'f17' })).toThrow(/unknown kvDtype f17/);
  });
});
