// A model's generation_config.json: its sampling fields are the defaults of requests that leave
// them unset (do_sample false: greedy), and its eos_token_id adds end tokens (Llama 3 Instruct's
// <|eot_id|> is named only there). A real worker on a small Hugging Face directory.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadHfDir } from '@kcache/models';
import { type RunningWorker, startWorker } from '@kcache/worker';
import { afterAll, expect, test } from 'vitest';
import { SMALL_HF, writeTinyHfModel } from './helpers/hf-model.js';
import { generate, workerClient } from './helpers/worker-client.js';

const workers: RunningWorker[] = [];
afterAll(async () => {
  for (const w of workers) await w.close();
});

test('generation_config.json: sampling defaults and extra end tokens, read as vLLM reads them', () => {
  const m = writeTinyHfModel({ ...SMALL_HF, vocab: 64 });
  expect(loadHfDir(m.dir).generationDefaults).toEqual({});
  writeFileSync(join(m.dir, 'generation_config.json'), JSON.stringify({ temperature: 0.6, top_p: 0.9, top_k: 20, eos_token_id: [2, 9] }));
  const spec = loadHfDir(m.dir);
  expect(spec.generationDefaults).toEqual({ temperature: 0.6, topP: 0.9, topK: 20, minP: undefined, repetitionPenalty: undefined });
  expect(spec.eosTokenIds).toEqual([2, 9]);
  writeFileSync(join(m.dir, 'generation_config.json'), JSON.stringify({ do_sample: false, temperature: 0.6, eos_token_id: 11 }));
  expect(loadHfDir(m.dir).generationDefaults?.temperature).toBe(0);
  expect(loadHfDir(m.dir).eosTokenIds).toEqual([2, 11]);
  writeFileSync(join(m.dir, 'generation_config.json'), '{ not json');
  expect(() => loadHfDir(m.dir)).toThrow(/generation_config\.json/);
});

test("a worker fills what a request leaves unset from the model's defaults; what it sets wins", async () => {
  const m = writeTinyHfModel({ ...SMALL_HF, vocab: 64, seed: 3 });
  // a flat default (temperature 5) that no request here could be mistaken for
  writeFileSync(join(m.dir, 'generation_config.json'), JSON.stringify({ temperature: 5 }));
  const w = await startWorker({ model: m.dir, port: 0, redisUrl: null, numBlocks: 32, threads: 1 });
  workers.push(w);
  const c = workerClient(w.address);
  try {
    const ask = async (id: string, sampling: object) =>
      (await generate(c, { requestId: id, tokenIds: [1, 5, 9, 12], sampling, stop: { maxTokens: 24, ignoreEos: true } })).tokenIds;
    for (const seed of [3, 4]) {
      const unset = await ask(`u${seed}`, { seed });
      expect(unset).toEqual(await ask(`t5-${seed}`, { temperature: 5, seed })); // the model's default
      expect(unset).not.toEqual(await ask(`t1-${seed}`, { temperature: 1, seed })); // not the built-in 1
    }
    expect(await ask('g1', { temperature: 0, seed: 3 })).toEqual(await ask('g2', { temperature: 0, seed: 4 })); // a request's own value wins
  } finally {
    c.close();
  }
});
