import { describe, expect, test } from 'vitest';
import { Rng } from './rng.js';
import { argmax, sample, validateSampling } from './sample.js';

const logits = Float32Array.from([1, 3, 2, 3, -1, 0.5]);
const base = { temperature: 1, topK: 0, topP: 1, minP: 0 };

function histogram(p: typeof base, n = 4000, seed = 1): number[] {
  const rng = new Rng(seed);
  const h = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) h[sample(logits, p, rng)]++;
  return h;
}

describe('sample', () => {
  test('greedy takes the first maximum', () => {
    expect(argmax(logits)).toBe(1);
    expect(sample(logits, { ...base, temperature: 0 }, new Rng(1))).toBe(1);
  });

  test('temperature 1 follows the softmax', () => {
    const h = histogram(base, 20000);
    const z = Array.from(logits).reduce((a, l) => a + Math.exp(l), 0);
    Array.from(logits).forEach((l, i) => {
      expect((h[i] as number) / 20000).toBeCloseTo(Math.exp(l) / z, 1);
    });
  });

  test('top_k keeps the k most likely (ties by lower id)', () => {
    const h = histogram({ ...base, topK: 2 });
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([1, 3]);
  });

  test('top_p keeps the smallest set reaching p', () => {
    // p(1) = p(3) ≈ 0.39 each, p(2) ≈ 0.14: 0.7 needs ids 1 and 3 only
    const h = histogram({ ...base, topP: 0.7 });
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([1, 3]);
  });

  test('min_p drops tokens below min_p × the top probability', () => {
    const h = histogram({ ...base, minP: 0.3 }); // keeps p >= 0.3 * 0.39: ids 1, 3, 2
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([1, 2, 3]);
  });

  test('same seed, same samples', () => {
    expect(histogram(base, 200, 5)).toEqual(histogram(base, 200, 5));
    expect(histogram(base, 200, 5)).not.toEqual(histogram(base, 200, 6));
  });

  test('validation names the field', () => {
    expect(validateSampling({ ...base, temperature: -1 })).toMatch(/^temperature/);
    expect(validateSampling({ ...base, temperature: Number.NaN })).toMatch(/^temperature/);
    expect(validateSampling({ ...base, topK: 1.5 })).toMatch(/^top_k/);
    expect(validateSampling({ ...base, topP: 0 })).toMatch(/^top_p/);
    expect(validateSampling({ ...base, minP: 2 })).toMatch(/^min_p/);
    expect(validateSampling(base)).toBeNull();
  });
});
