// Engine logits against the independent float64 reference (test/reference/forward.ts):
// within 1e-4 relative (max |diff| / max |ref| per logit vector) for f32 weights, and for
// bf16/f16 weights against the same quantised values.
import { Engine } from '@kcache/engine';
import { loadHfDir, type ModelSpec, resolveModel } from '@kcache/models';
import { afterAll, describe, expect, test } from 'vitest';
import { referenceConfig, type TinyHfConfig, weightSource, writeTinyHfModel } from './helpers/hf-model.js';
import { randomIds } from './helpers/ids.js';
import { STORIES_260K } from './helpers/paths.js';
import { referenceLogits, relError } from './reference/forward.js';
import { llama2cWeights } from './reference/llama2c-weights.js';

const engines: Engine[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
});

async function load(spec: ModelSpec, numBlocks = 64): Promise<Engine> {
  const e = await Engine.load(spec, { numBlocks, threads: 2 });
  engines.push(e);
  return e;
}

/** Runs `ids` as one prefill with all-position logits, then compares every row with the reference. */
async function expectMatchesReference(engine: Engine, ref: Float64Array[], ids: number[], tol: number) {
  const blocks = Array.from({ length: Math.ceil(ids.length / 16) }, (_, i) => i);
  const [all] = await engine.step([{ tokens: ids, startPos: 0, blockTable: blocks, allLogits: true }]);
  const v = engine.vocabSize;
  let worst = 0;
  for (let i = 0; i < ids.length; i++)
    worst = Math.max(worst, relError((all as Float32Array).subarray(i * v, (i + 1) * v), ref[i] as Float64Array));
  expect(worst).toBeLessThan(tol);
  expect(worst).toBeGreaterThan(0); // f32 vs f64 never agree exactly: a zero means the comparison compared nothing
}

describe('stories260K (trained weights, interleaved RoPE, GQA 8/4)', () => {
  test('logits match the float64 reference at every position of a 64-token sequence', async () => {
    const spec = resolveModel(STORIES_260K);
    const ids = randomIds(64, 512, 3);
    const { config, source } = llama2cWeights(STORIES_260K);
    const ref = referenceLogits(config, source, ids);
    await expectMatchesReference(await load(spec), ref, ids, 1e-4);
  });
});

describe('Hugging Face safetensors models (half-split RoPE)', () => {
  const cases: [string, Partial<TinyHfConfig>, number][] = [
    ['Llama f32, GQA 4/2, untied', { arch: 'LlamaForCausalLM', dtype: 'f32', tied: false }, 1e-4],
    ['Llama f32 with Llama-3 rope scaling', { arch: 'LlamaForCausalLM', dtype: 'f32', llama3: true, ropeTheta: 500000 }, 1e-4],
    ['Qwen2 f32 with q/k/v bias, sharded', { arch: 'Qwen2ForCausalLM', dtype: 'f32', shards: 3 }, 1e-4],
    ['Mistral bf16', { arch: 'MistralForCausalLM', dtype: 'bf16' }, 1e-4],
    ['Llama f32, head_dim 64', { arch: 'LlamaForCausalLM', dtype: 'f32', dim: 128, hidden: 160, heads: 2, kvHeads: 1 }, 1e-4],
    ['Llama bf16, head_dim 128', { arch: 'LlamaForCausalLM', dtype: 'bf16', dim: 256, hidden: 96, heads: 2, kvHeads: 2 }, 1e-4],
    // the attention kernels read each K/V row once for a KV head's whole group: 8 and 3 heads a group
    ['Llama f32, GQA 8/1', { arch: 'LlamaForCausalLM', dtype: 'f32', dim: 128, hidden: 96, heads: 8, kvHeads: 1 }, 1e-4],
    ['Llama f32, GQA 6/2, head_dim 32', { arch: 'LlamaForCausalLM', dtype: 'f32', dim: 192, hidden: 96, heads: 6, kvHeads: 2 }, 1e-4],
    [
      'Llama f16, odd sizes (SIMD tails)',
      { arch: 'LlamaForCausalLM', dtype: 'f16', dim: 36, hidden: 50, heads: 3, kvHeads: 1, vocab: 301 },
      1e-4,
    ],
  ];
  test.each(cases)('%s', async (_name, over, tol) => {
    const m = writeTinyHfModel({
      arch: 'LlamaForCausalLM',
      dim: 64,
      hidden: 96,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      vocab: 300,
      dtype: 'f32',
      tied: true,
      ...over,
    });
    const spec = loadHfDir(m.dir);
    const ids = randomIds(40, spec.config.vocabSize, 11);
    const ref = referenceLogits(referenceConfig(m), weightSource(m), ids);
    await expectMatchesReference(await load(spec), ref, ids, tol);
  });
});

describe('16-bit KV cache rows read in place by the grouped attention kernels', () => {
  // K and V rounded to 16 bits: a few thousandths of the largest logit from the f64 reference
  test.each(['f16', 'bf16'] as const)('Llama f32, GQA 6/2, head_dim 32, %s KV cache', async (kvDtype) => {
    const m = writeTinyHfModel({
      arch: 'LlamaForCausalLM',
      dim: 192,
      hidden: 96,
      layers: 2,
      heads: 6,
      kvHeads: 2,
      vocab: 300,
      dtype: 'f32',
      tied: true,
    });
    const spec = loadHfDir(m.dir);
    const ids = randomIds(40, spec.config.vocabSize, 12);
    const ref = referenceLogits(referenceConfig(m), weightSource(m), ids);
    const e = await Engine.load(spec, { numBlocks: 64, threads: 2, kvDtype });
    engines.push(e);
    await expectMatchesReference(e, ref, ids, kvDtype === 'f16' ? 2e-3 : 2e-2);
  });
});

describe('dummy models', () => {
  test.each(['f32', 'bf16', 'f16'])('dummy:tiny:%s matches the reference on its own (dequantised) weights', async (dtype) => {
    const spec = resolveModel(`dummy:tiny:${dtype}`);
    const engine = await load(spec);
    const ids = randomIds(33, 512, 5);
    const ref = referenceLogits(spec.config, (name) => engine.readWeight(name), ids);
    await expectMatchesReference(engine, ref, ids, 1e-4);
  });

  test('weights are deterministic by seed and differ across seeds', async () => {
    const a = await load(resolveModel('dummy:tiny', { seed: 1 }), 1);
    const b = await load(resolveModel('dummy:tiny', { seed: 1 }), 1);
    const c = await load(resolveModel('dummy:tiny', { seed: 2 }), 1);
    expect(a.readWeight('layers.1.w2')).toEqual(b.readWeight('layers.1.w2'));
    expect(a.readWeight('layers.1.w2')).not.toEqual(c.readWeight('layers.1.w2'));
  });

  test('presets have the documented shapes', () => {
    const s = resolveModel('dummy:smol135').config;
    expect([s.dim, s.nLayers, s.nHeads, s.nKvHeads, s.hiddenDim, s.vocabSize]).toEqual([576, 30, 9, 3, 1536, 49152]);
    const l = resolveModel('dummy:llama1b:bf16');
    expect([l.config.dim, l.config.nLayers, l.config.nHeads, l.config.nKvHeads, l.config.hiddenDim, l.config.vocabSize]).toEqual([
      2048, 16, 32, 8, 8192, 32000,
    ]);
    expect(l.tensors.every((t) => t.dtype === 'bf16')).toBe(true);
  });
});
