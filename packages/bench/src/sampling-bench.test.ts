// The sampling benchmark's machinery on a tiny model's logits: every setting timed both ways, and
// the sampler gives its reference's token on every draw.
import { expect, test } from 'vitest';
import { formatSamplingBench, runSamplingBench, SAMPLING_SETTINGS } from './sampling-bench.js';

test('every setting, both samplers, the same token on every draw', async () => {
  const r = await runSamplingBench({ model: 'dummy:tiny', rows: 6, threads: 2, log: () => {} });
  expect(r.vocab).toBeGreaterThan(100);
  expect(r.rows.map((x) => x.setting)).toEqual(SAMPLING_SETTINGS.map(([s]) => s));
  for (const row of r.rows) {
    expect(row.draws).toBe(6);
    expect(row.agreed).toBe(6);
    expect(row.sampleMs).toBeGreaterThan(0);
    expect(row.referenceMs).toBeGreaterThan(0);
  }
  const table = formatSamplingBench(r);
  expect(table).toContain('| temperature 1 |');
  expect(table).toContain('| 6/6 |');
});
