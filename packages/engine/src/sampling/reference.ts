/**
 * The sampler's definition (sample.ts), written the plain way: the whole vocabulary sorted with a
 * comparator, the filters applied to arrays. sample.test.ts checks sample() against it token for
 * token, and `kcache bench sampling` times both.
 */
import type { Rng } from './rng.js';
import { expWeights, type SamplingParams } from './sample.js';

/** The index of the first largest value: x[0], then each later value that is larger (a NaN at 0 wins, a later one never does). */
export function argmaxReference(logits: ArrayLike<number>): number {
  let best = 0;
  let bestV = logits[0] as number;
  for (let i = 1; i < logits.length; i++) {
    const v = logits[i] as number;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

export function sampleReference(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature === 0) return argmaxReference(logits);
  const n = logits.length;
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) if (v > max) max = v;
  if (!Number.isFinite(max)) return argmaxReference(logits);
  const weights = expWeights(logits, max, p.temperature);
  const w = (i: number) => weights[i] as number;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
  // every sum of w in id order
  const sum = (ids: number[]) => [...ids].sort((a, b) => a - b).reduce((s, i) => s + w(i), 0);
  let kept = p.topK > 0 && p.topK < n ? order.slice(0, p.topK) : order;
  const total0 = sum(kept);
  if (p.topP < 1) {
    let cum = 0;
    for (let k = 0; k < kept.length; k++) {
      cum += w(kept[k] as number) / total0;
      if (cum >= p.topP) {
        kept = kept.slice(0, k + 1);
        break;
      }
    }
  }
  if (p.minP > 0) {
    const threshold = w(kept[0] as number) * p.minP;
    const cut = kept.findIndex((i) => w(i) < threshold);
    if (cut > 0) kept = kept.slice(0, cut);
  }
  // the draw walks what is kept in id order
  let u = rng.next() * sum(kept);
  let lastPositive = -1;
  for (const i of [...kept].sort((a, b) => a - b)) {
    if (!(w(i) > 0)) continue;
    lastPositive = i;
    u -= w(i);
    if (u < 0) return i;
  }
  return lastPositive;
}
