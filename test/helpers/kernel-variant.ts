// Checks one SIMD variant of the CPU kernels against the float64 reference. KCACHE_SIMD is read
// when the addon first runs a kernel, so each variant's test file sets it before anything loads
// (vitest runs each test file in its own process).
import { Engine } from '@kcache/engine';
import { loadHfDir, resolveModel } from '@kcache/models';
import { expect, test } from 'vitest';
import { referenceLogits, relError } from '../reference/forward.js';
import { llama2cWeights } from '../reference/llama2c-weights.js';
import { referenceConfig, weightSource, writeTinyHfModel } from './hf-model.js';
import { checkLongContext } from './long-context.js';
import { STORIES_260K } from './paths.js';

export function testKernelsAgainstReference(variant: 'generic' | 'avx2' | 'avx512'): void {
  test.each([
    [
      'stories260K',
      () => {
        const { config, source } = llama2cWeights(STORIES_260K);
        return { spec: resolveModel(STORIES_260K), refConfig: config, W: source };
      },
    ],
    [
      'f16 Llama with head_dim 64',
      () => {
        const m = writeTinyHfModel({
          arch: 'LlamaForCausalLM',
          dim: 128,
          hidden: 128,
          layers: 1,
          heads: 2,
          kvHeads: 1,
          vocab: 300,
          dtype: 'f16',
          tied: true,
        });
        return { spec: loadHfDir(m.dir), refConfig: referenceConfig(m), W: weightSource(m) };
      },
    ],
    [
      'f32 Llama with head_dim 128',
      () => {
        const m = writeTinyHfModel({
          arch: 'LlamaForCausalLM',
          dim: 256,
          hidden: 64,
          layers: 1,
          heads: 2,
          kvHeads: 2,
          vocab: 300,
          dtype: 'f32',
          tied: true,
        });
        return { spec: loadHfDir(m.dir), refConfig: referenceConfig(m), W: weightSource(m) };
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
  ])(`${variant} kernels: %s matches the reference`, async (_name, make) => {
    const { spec, refConfig, W } = make();
    const engine = await Engine.load(spec, { numBlocks: 8, threads: 2 });
    expect(engine.info().backend).toBe(`cpu/${variant}`);
    // 19 + 2 + 1 rows: every row-tile remainder of the 4-row (AVX-512) and 2-row (AVX2) tiles
    const ids = [1, 17, 200, 45, 3, 99, 250, 7, 8, 120, 33, 64, 2, 5, 6, 190, 21, 11, 42, 77, 160, 9];
    const ref = referenceLogits(refConfig, W, ids);
    const v = engine.vocabSize;
    const chunks = [ids.slice(0, 19), ids.slice(19, 21), ids.slice(21)];
    let pos = 0;
    for (const tokens of chunks) {
      const [all] = await engine.step([{ tokens, startPos: pos, blockTable: [0, 1], allLogits: true }]);
      for (let i = 0; i < tokens.length; i++) {
        const err = relError((all as Float32Array).subarray(i * v, (i + 1) * v), ref[pos + i] as Float64Array);
        expect(err).toBeLessThan(1e-4);
      }
      pos += tokens.length;
    }
    engine.dispose();
  });
  test(`${variant} kernels: full and top-N attention over 1,300 positions match the reference`, async () => {
    await checkLongContext(undefined, `cpu/${variant}`);
    await checkLongContext({ topN: 5, fullLayers: 1, renormalize: true }, `cpu/${variant}`);
  });
}

/** KCache top-N decode (the kernels' single-row dot/axpy paths) against the reference's top-N attention. */
export function testKCacheAgainstReference(variant: 'generic' | 'avx2' | 'avx512'): void {
  test(`${variant} kernels: KCache top-N decode on stories260K matches the reference`, async () => {
    const { config, source } = llama2cWeights(STORIES_260K);
    const kcache = { topN: 5, fullLayers: 1, renormalize: true };
    const engine = await Engine.load(resolveModel(STORIES_260K), { numBlocks: 4, threads: 2, attention: 'kcache', kcache });
    expect(engine.info().backend).toBe(`cpu/${variant}`);
    const ids = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 53) % 500)));
    const ref = referenceLogits(config, source, ids, kcache);
    for (let p = 0; p < ids.length; p++) {
      const [l] = await engine.step([{ tokens: [ids[p] as number], startPos: p, blockTable: [0, 1, 2] }]);
      expect(relError(l as Float32Array, ref[p] as Float64Array)).toBeLessThan(1e-4);
    }
    engine.dispose();
  });
  test(`${variant} kernels: full and top-N attention over 1,300 positions match the reference`, async () => {
    await checkLongContext(undefined, `cpu/${variant}`);
    await checkLongContext({ topN: 5, fullLayers: 1, renormalize: true }, `cpu/${variant}`);
  });
}
