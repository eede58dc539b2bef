import { describe, expect, test } from 'vitest';
import { sampleReference } from './reference.js';
import { Rng } from './rng.js';
import { argmax, type SamplingParams, sample, validateSampling } from './sample.js';

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

describe('sample equals its plain definition (reference.ts) token for token', () => {
  const gen = new Rng(20261202);
  const normal = () => Math.sqrt(-2 * Math.log(1 - gen.next())) * Math.cos(2 * Math.PI * gen.next());
  // logits shaped like a model's, flat, in ties, and with banned (-Infinity) tokens
  const shapes: Record<string, (n: number) => Float32Array> = {
    peaked: (n) => Float32Array.from({ length: n }, (_, i) => 3 * normal() + (i % 97 === 0 ? 12 : 0)),
    flat: (n) => Float32Array.from({ length: n }, () => 0.01 * normal()),
    ties: (n) => Float32Array.from({ length: n }, () => (gen.next() < 0.2 ? -0 : Math.floor(gen.next() * 4))),
    banned: (n) => Float32Array.from({ length: n }, () => (gen.next() < 0.3 ? Number.NEGATIVE_INFINITY : 2 * normal())),
    one: (n) => Float32Array.from({ length: n }, (_, i) => (i === n - 1 ? 0 : Number.NEGATIVE_INFINITY)),
  };
  const params: SamplingParams[] = [];
  for (const temperature of [0.05, 0.7, 1, 3, 100])
    for (const topK of [0, 1, 5, 40])
      for (const topP of [1, 0.9, 0.3]) for (const minP of [0, 0.05, 0.6]) params.push({ temperature, topK, topP, minP });

  for (const [shape, make] of Object.entries(shapes)) {
    test(`${shape} logits, ${params.length} settings`, () => {
      for (const n of [3, 200, 2000]) {
        const logits = make(n);
        for (const [k, p] of params.entries()) {
          const q = { ...p, topK: p.topK === 40 && k % 2 ? n - 1 : p.topK };
          const a = new Rng(k);
          const b = new Rng(k);
          for (let draw = 0; draw < 5; draw++) {
            const want = sampleReference(logits, q, a);
            const got = sample(logits, q, b);
            if (got !== want) expect({ shape, n, params: q, draw, got }).toEqual({ shape, n, params: q, draw, got: want });
          }
        }
      }
    });
  }

  test("a vocabulary's worth of logits (49,152) under vLLM's usual settings", () => {
    const logits = shapes.peaked?.(49_152) as Float32Array;
    for (const p of [base, { ...base, temperature: 0.7, topP: 0.95 }, { ...base, topK: 50, minP: 0.05 }]) {
      const a = new Rng(3);
      const b = new Rng(3);
      for (let draw = 0; draw < 20; draw++) expect(sample(logits, p, b)).toBe(sampleReference(logits, p, a));
    }
  });
});
