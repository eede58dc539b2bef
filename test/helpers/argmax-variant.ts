// Greedy sampling's argmax by one SIMD variant's kernel (the test file sets KCACHE_SIMD first)
// against its definition, argmaxReference, on random logits and on the edge cases the definition
// settles: NaN first or later, -0 beside +0, -Infinity, the largest value repeated.
import { argmax, argmaxReference } from '@kcache/engine';
import { expect, test } from 'vitest';
import { rng } from './quant-blocks.js';

export function testArgmax(variant: string): void {
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
}
