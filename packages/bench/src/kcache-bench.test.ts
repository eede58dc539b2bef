import { kvBytesPerBlock } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { describe, expect, test } from 'vitest';
import { formatBudget, measureBudgetDecode } from './kcache-bench.js';

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
