// The benchmark's machinery, on a tiny model: the GGUF writer produces a file llama.cpp loads and
// runs to the same greedy tokens as the engine (so the comparison is on identical weights).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { formatEngineBench, runEngineBench } from './engine-bench.js';

test('kcache and llama.cpp agree on greedy tokens of the same weights', async ({ onTestFinished }) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'kcache-bench-'));
  onTestFinished(() => rmSync(cacheDir, { recursive: true, force: true }));
  const result = await runEngineBench({
    model: 'dummy:tiny',
    dtypes: ['f32', 'bf16', 'q8_0', 'q4_0', 'q4_k'],
    threads: 2,
    promptLen: 40,
    decodeTokens: 12,
    batches: [3],
    batchDecodeSteps: 4,
    kvDtype: 'auto',
    llamaCpp: true,
    cacheDir,
    log: () => {},
  });
  expect(result.rows).toHaveLength(5);
  for (const row of result.rows) {
    expect(row.llamaCpp?.greedy).toEqual(row.kcache.greedy);
    expect(row.kcache.greedy).toHaveLength(12);
    expect(row.kcache.batchTps[3]).toBeGreaterThan(0);
    // each row's roofline is the bandwidth measured around its own decode run
    expect(row.bandwidth).toBeGreaterThan(1e8);
    expect(formatEngineBench(result)).toContain(`MB/token at ${(row.bandwidth / 1e9).toFixed(1)} GB/s) |`);
  }
  expect(formatEngineBench(result)).toContain('| bf16 | greedy tokens identical before first divergence | 12/12 |');
}, 120_000);
