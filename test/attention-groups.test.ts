// The CPU attention with its scratch capped at nothing, so every row is a group of its own (as a
// long prefill chunk at a long context is split to bound memory): results still match the
// reference and batched decode rows still equal the same rows alone.
process.env.KCACHE_ATTENTION_SCRATCH_MB = '0';

import { Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { expect, test } from 'vitest';
import { randomIds } from './helpers/ids.js';
import { checkLongContext } from './helpers/long-context.js';

test('full and top-N attention over 1,300 positions, one row at a time', async () => {
  await checkLongContext(undefined);
  await checkLongContext({ topN: 5, fullLayers: 1, renormalize: true });
});

test('batched decode rows equal the same rows alone', async () => {
  const engine = await Engine.load(resolveModel('dummy:tiny'), { numBlocks: 200, threads: 2, attention: 'kcache', kcache: { topN: 8 } });
  try {
    const seqs = [randomIds(700, 512, 1), randomIds(1100, 512, 2), randomIds(90, 512, 3)];
    const tables = seqs.map((s, i) => Array.from({ length: Math.ceil(s.length / 16) }, (_, b) => i * 70 + b));
    for (const [i, s] of seqs.entries()) await engine.step([{ tokens: s.slice(0, -1), startPos: 0, blockTable: tables[i] as number[] }]);
    const last = seqs.map((s, i) => ({ tokens: [s.at(-1) as number], startPos: s.length - 1, blockTable: tables[i] as number[] }));
    const batched = await engine.step(last);
    for (const [i, row] of last.entries()) expect(batched[i]).toEqual((await engine.step([row]))[0]);
  } finally {
    engine.dispose();
  }
});
