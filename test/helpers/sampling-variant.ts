// Sampling's native pieces by one SIMD variant's kernels (the test file sets KCACHE_SIMD first):
// greedy's argmax against its definition, argmaxReference, on random logits and on the edge cases
// the definition settles (NaN first or later, -0 beside +0, -Infinity, the largest value
// repeated); and the weights exp((logit - max) / temperature) against float64's Math.exp.
import { argmax, argmaxReference, expWeights } from '@kcache/engine';
import { expect, test } from 'vitest';
import { rng } from './quant-blocks.js';

export function testSamplingKernels(variant: string): void {
  test(`argmax (${variant}): the index argmaxReference gives, on every size and edge case`, () => {
    const r = rng(5);
    const cases: [string, Float32Array][] = [];
    for (const n of [64, 65, 127, 1000, 4099, 49_152, 151_936]) {
      const x = Float32Array.from({ length: n }, () => 20 * r() - 10);
      cases.push([`random ${n}`, x]);
      const ties = Float32Array.from({ length: n }, () => Math.floor(4 * r()));
      cases.push([`ties ${n}`, ties]);
      const zeros = Float32Array.from({ length: n }, () => (r() < 0.5 ? -0 : r() < 0.5 ? 0 : Number.NEGATIVE_INFINITY));
      cases.push([`signed zeros ${n}`, zeros]);
      const nanLater = x.slice();
      for (let i = 1; i < n; i += 7) nanLater[i] = Number.NaN;
      cases.push([`NaN after 0 ${n}`, nanLater]);
      const nanFirst = x.slice();
      nanFirst[0] = Number.NaN;
      cases.push([`NaN at 0 ${n}`, nanFirst]);
      cases.push([`all -Infinity ${n}`, new Float32Array(n).fill(Number.NEGATIVE_INFINITY)]);
      const last = x.slice();
      last[n - 1] = 11;
      cases.push([`largest last ${n}`, last]);
    }
    for (const [name, x] of cases) expect([name, argmax(x)]).toEqual([name, argmaxReference(x)]);
  });

  test(`sampling weights (${variant}): exp((logit - max) / temperature) within 1e-5, 1 at the max, 0 for -Infinity`, () => {
    const r = rng(9);
    for (const n of [1, 17, 1000, 49_152])
      for (const temperature of [0.05, 0.7, 1, 3, 100]) {
        const x = Float32Array.from({ length: n }, () => (r() < 0.05 ? Number.NEGATIVE_INFINITY : 40 * r() - 20));
        x[n - 1] = 21; // the max
        const w = expWeights(x, 21, temperature);
        let worst = 0;
        for (let i = 0; i < n; i++) {
          const want = Math.exp(((x[i] as number) - 21) / temperature);
          if (x[i] === Number.NEGATIVE_INFINITY) expect(w[i]).toBe(0);
          else worst = Math.max(worst, Math.abs((w[i] as number) - want) / Math.max(want, 1e-30));
        }
        expect(w[n - 1]).toBe(1);
        // (below e^-87 a float32 is subnormal or clamped: those weights are compared only in absolute terms)
        for (let i = 0; i < n; i++) if (Math.exp(((x[i] as number) - 21) / temperature) < 1e-30) expect(w[i] as number).toBeLessThan(1e-30);
        expect(worst).toBeLessThan(1e-5);
      }
  });
}
