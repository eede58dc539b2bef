// The portable kernels (the fallback on CPUs without AVX2/FMA) checked against the reference.
// KCACHE_SIMD is read when the addon first runs a kernel, so it is set before anything loads;
// vitest runs each test file in its own process.
process.env.KCACHE_SIMD = 'generic';

import { Engine, loadHfDir, resolveModel } from '@kcache/engine';
import { expect, test } from 'vitest';
import { referenceConfig, weightSource, writeTinyHfModel } from './helpers/hf-model.js';
import { STORIES_260K } from './helpers/paths.js';
import { referenceLogits, relError } from './reference/forward.js';
import { llama2cWeights } from './reference/llama2c-weights.js';

test.each([
  [
    'stories260K',
    () => {
      const { config, source } = llama2cWeights(STORIES_260K);
      return { spec: resolveModel(STORIES_260K), refConfig: config, W: source };
    },
  ],
  [
    'bf16 Qwen2 with odd sizes',
    () => {
      const m = writeTinyHfModel({
        arch: 'Qwen2ForCausalLM',
        dim: 36,
        hidden: 50,
        layers: 2,
        heads: 3,
        kvHeads: 1,
        vocab: 301,
        dtype: 'bf16',
        tied: false,
      });
      return { spec: loadHfDir(m.dir), refConfig: referenceConfig(m), W: weightSource(m) };
    },
  ],
])('generic kernels: %s matches the reference', async (_name, make) => {
  const { spec, refConfig, W } = make();
  const engine = await Engine.load(spec, { numBlocks: 8, threads: 2 });
  expect(engine.info().backend).toBe('cpu/generic');
  const ids = [1, 17, 200, 45, 3, 99, 250, 7, 8, 120, 33, 64, 2, 5, 6, 190, 21];
  const ref = referenceLogits(refConfig, W, ids);
  const [all] = await engine.step([{ tokens: ids, startPos: 0, blockTable: [0, 1], allLogits: true }]);
  const v = engine.vocabSize;
  for (let i = 0; i < ids.length; i++) {
    const err = relError((all as Float32Array).subarray(i * v, (i + 1) * v), ref[i] as Float64Array);
    expect(err).toBeLessThan(1e-4);
  }
  engine.dispose();
});
