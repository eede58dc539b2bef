import type { Rng } from './rng.js';

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 0 or negative = disabled. */
  topK: number;
  /** 1 = disabled. */
  topP: number;
  /** 0 = disabled. */
  minP: number;
}

/** Checks ranges; returns the name of the first bad field and why, or null. */
export function validateSampling(p: SamplingParams): string | null {
  if (!Number.isFinite(p.temperature) || p.temperature < 0) return `temperature must be a finite number >= 0, got ${p.temperature}`;
  if (!Number.isInteger(p.topK) || p.topK < 0) return `top_k must be an integer >= 0, got ${p.topK}`;
  if (!(p.topP > 0 && p.topP <= 1)) return `top_p must be in (0, 1], got ${p.topP}`;
  if (!(p.minP >= 0 && p.minP <= 1)) return `min_p must be in [0, 1], got ${p.minP}`;
  return null;
}

/** Index of the largest logit; the lowest index wins ties, so greedy decoding is deterministic. */
export function argmax(logits: ArrayLike<number>): number {
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

/**
 * Samples a token: temperature scaling, then top-k, top-p (nucleus) and min-p filtering of the
 * softmax distribution, in vLLM's order. Temperature 0 is greedy.
 */
export function sample(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature === 0) return argmax(logits);
  const n = logits.length;
  let idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
  if (p.topK > 0 && p.topK < n) idx = idx.slice(0, p.topK);
  const maxLogit = logits[idx[0] as number] as number;
  let probs = idx.map((i) => Math.exp(((logits[i] as number) - maxLogit) / p.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (p.topP < 1) {
    let cum = 0;
    let keep = probs.length;
    for (let i = 0; i < probs.length; i++) {
      cum += (probs[i] as number) / total;
      if (cum >= p.topP) {
        keep = i + 1;
        break;
      }
    }
    idx = idx.slice(0, keep);
    probs = probs.slice(0, keep);
  }
  if (p.minP > 0) {
    const threshold = (probs[0] as number) * p.minP;
    const keep = probs.findIndex((q) => q < threshold);
    if (keep > 0) {
      idx = idx.slice(0, keep);
      probs = probs.slice(0, keep);
    }
  }
  total = probs.reduce((a, b) => a + b, 0);
  let u = rng.next() * total;
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i] as number;
    if (u < 0) return idx[i] as number;
  }
  return idx[idx.length - 1] as number;
}
