import { Engine, generate } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { expect, test } from 'vitest';
import { STORIES_260K } from './helpers/paths.js';

const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0 };

// Greedy continuation of BOS on stories260K. llama.cpp (node-llama-cpp 3.21.1) produced the same
// 30 ids from the same weights written as GGUF (see packages/bench/src/gguf.ts).
const GOLDEN = [
  461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431,
  431, 431,
];

test('stories260K greedy generation is deterministic and matches the golden ids', async () => {
  const runs: number[][] = [];
  for (const threads of [1, 2, 2]) {
    const engine = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 8, threads });
    const r = await generate(engine, { promptIds: [1], maxTokens: 30, sampling: GREEDY });
    engine.dispose();
    runs.push(r.tokenIds);
    expect(r.finishReason).toBe('length');
  }
  expect(runs[0]).toEqual(GOLDEN);
  expect(runs[1]).toEqual(GOLDEN);
  expect(runs[2]).toEqual(GOLDEN);
});

test('seeded sampling is reproducible and differs across seeds', async () => {
  const engine = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 16, threads: 2 });
  const run = (seed: number) =>
    generate(engine, { promptIds: [1, 300, 50], maxTokens: 40, seed, sampling: { temperature: 1, topK: 40, topP: 0.95, minP: 0 } });
  const a = await run(7);
  const b = await run(7);
  const c = await run(8);
  expect(a.tokenIds).toEqual(b.tokenIds);
  expect(a.tokenIds).not.toEqual(c.tokenIds);
  engine.dispose();
});

test('EOS stops generation unless ignored; prompt and length limits are checked', async () => {
  const engine = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 40, threads: 2 });
  // with seed 3 the sampled story reaches EOS (id 2) at token 115
  const sampled = { temperature: 1, topK: 0, topP: 1, minP: 0 };
  const long = await generate(engine, { promptIds: [1], maxTokens: 200, seed: 3, sampling: sampled, ignoreEos: true });
  const eosAt = long.tokenIds.indexOf(2);
  expect(eosAt).toBe(115);
  const stopped = await generate(engine, { promptIds: [1], maxTokens: 200, seed: 3, sampling: sampled });
  expect(stopped.finishReason).toBe('stop');
  expect(stopped.tokenIds).toEqual(long.tokenIds.slice(0, eosAt + 1));
  expect(long.tokenIds).toHaveLength(200);
  await expect(generate(engine, { promptIds: [], maxTokens: 1, sampling: GREEDY })).rejects.toThrow(/prompt/);
  await expect(generate(engine, { promptIds: [1, 512], maxTokens: 1, sampling: GREEDY })).rejects.toThrow(/prompt_ids: 512 is outside/);
  await expect(generate(engine, { promptIds: [1], maxTokens: 600, sampling: GREEDY })).rejects.toThrow(/exceeds the context length 512/);
  await expect(generate(engine, { promptIds: [1], maxTokens: 5, sampling: { ...GREEDY, temperature: Number.NaN } })).rejects.toThrow(
    /temperature/,
  );
  engine.dispose();
});
