// The KV-dtype comparison's machinery on a tiny model: one engine per dtype, interleaved rounds,
// ratios against the first-listed dtype.
import { expect, test } from 'vitest';
import { formatKvDtypeBench, median, runKvDtypeBench } from './kv-dtype-bench.js';

const base = {
  model: 'dummy:tiny',
  dtype: 'bf16' as const,
  threads: 2,
  llamaCpp: false,
  cacheDir: '.bench',
  log: () => {},
};

test('median of odd and even counts', () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 3, 2])).toBe(2.5);
});

test('every KV dtype decodes in every round; the baseline is 1.00x of itself', async () => {
  const r = await runKvDtypeBench({ ...base, kvDtypes: ['f32', 'f16', 'q8_0'], promptLen: 40, rounds: 3, stepsPerRound: 4 });
  expect(r.rows.map((x) => x.kvDtype)).toEqual(['f32', 'f16', 'q8_0']);
  const [f32, f16, q8] = r.rows;
  expect(f32?.ratio).toBe(1);
  expect(f32?.sameAsBaseline).toBe(12);
  for (const row of r.rows) {
    expect(row.decodeTps).toBeGreaterThan(0);
    expect(row.prefillTps).toBeGreaterThan(0);
    expect(row.ratioMin).toBeLessThanOrEqual(row.ratio);
    expect(row.ratioMax).toBeGreaterThanOrEqual(row.ratio);
  }
  // a 16-bit cache holds half the f32 bytes a token, q8_0 about a quarter; the weights are the same
  const weights = 2 * (f16?.bytesPerToken as number) - (f32?.bytesPerToken as number);
  expect(weights).toBeGreaterThan(0);
  expect((q8?.bytesPerToken as number) - weights).toBeLessThan(((f32?.bytesPerToken as number) - weights) * 0.3);
  const table = formatKvDtypeBench(r);
  expect(table).toContain('| f32 |');
  expect(table).toContain('1.00× (1.00–1.00)');
  expect(table).toContain('12 decode steps in 3 rounds of 4');
  // the roofline's bandwidth is measured around the decode rounds
  expect(r.bandwidth).toBeGreaterThan(1e8);
  expect(table).toContain(`read bandwidth measured around the rounds ${(r.bandwidth / 1e9).toFixed(2)} GB/s`);
}, 60_000);

test('a prompt and decode past the model context is refused before any work', async () => {
  await expect(runKvDtypeBench({ ...base, kvDtypes: ['f32'], promptLen: 1_000_000, rounds: 1, stepsPerRound: 1 })).rejects.toThrow(
    /prompt \(1000000\) \+ decode tokens \(1\) exceed dummy:tiny:bf16's context/,
  );
});
