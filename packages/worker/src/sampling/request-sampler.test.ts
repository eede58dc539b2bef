import { Rng } from '@kcache/engine';
import { expect, test } from 'vitest';
import { RequestSampler, type RequestSampling, validatePenalties } from './request-sampler.js';

const greedy: RequestSampling = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  seed: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logprobs: 0,
};

test('penalties push repeated tokens down', () => {
  const logits = () => Float32Array.from([1, 5, 4.9, 0]);
  expect(new RequestSampler(greedy, [], 0).next(logits(), 1, [0, 1]).token).toBe(1);
  expect(new RequestSampler({ ...greedy, repetitionPenalty: 1.1 }, [], 0).next(logits(), 1, [0, 1]).token).toBe(2);
  expect(new RequestSampler({ ...greedy, presencePenalty: 0.2 }, [], 0).next(logits(), 1, [0, 1]).token).toBe(2);
  expect(new RequestSampler({ ...greedy, frequencyPenalty: 0.05 }, [], 0).next(logits(), 1, [0, 1, 1, 1]).token).toBe(2);
  // a prompt token is not an output token for presence/frequency
  expect(new RequestSampler({ ...greedy, presencePenalty: 0.2 }, [], 0).next(logits(), 2, [0, 1]).token).toBe(1);
});

test('min_tokens bans EOS until reached; logprobs are the model distribution', () => {
  const s = new RequestSampler({ ...greedy, logprobs: 2 }, [1], 2);
  const r = s.next(Float32Array.from([0, 3, 1]), 1, [5]);
  expect(r.token).toBe(2);
  const z = Math.log(1 + Math.exp(3) + Math.exp(1));
  expect(r.logprobs?.logprob).toBeCloseTo(1 - z, 6);
  expect(r.logprobs?.top.map((t) => t.tokenId)).toEqual([1, 2]);
  expect(new RequestSampler(greedy, [1], 2).next(Float32Array.from([0, 3, 1]), 1, [5, 7, 8]).token).toBe(1);
});

test('logprobs over a whole vocabulary match float64 within 1e-6, top ones in order', () => {
  const rng = new Rng(3);
  const logits = Float32Array.from({ length: 49_152 }, () => rng.next() * 30 - 15);
  const copy = logits.slice();
  const out = new RequestSampler({ ...greedy, logprobs: 5 }, [], 0).next(logits, 1, [5]);
  let m = Number.NEGATIVE_INFINITY;
  for (const v of copy) m = Math.max(m, v);
  let z = 0;
  for (const v of copy) z += Math.exp(v - m);
  const lz = m + Math.log(z);
  const byLogit = Array.from(copy.keys()).sort((a, b) => (copy[b] as number) - (copy[a] as number) || a - b);
  expect(out.logprobs?.top.map((t) => t.tokenId)).toEqual(byLogit.slice(0, 5));
  for (const t of out.logprobs?.top ?? []) expect(Math.abs(t.logprob - ((copy[t.tokenId] as number) - lz))).toBeLessThan(1e-6);
  expect(Math.abs((out.logprobs?.logprob as number) - ((copy[out.token] as number) - lz))).toBeLessThan(1e-6);
});

test('penalty validation names the field', () => {
  expect(validatePenalties({ ...greedy, repetitionPenalty: 0 })).toMatch(/^repetition_penalty/);
  expect(validatePenalties({ ...greedy, presencePenalty: 3 })).toMatch(/^presence_penalty/);
  expect(validatePenalties({ ...greedy, logprobs: 21 })).toMatch(/^logprobs/);
  expect(validatePenalties(greedy)).toBeNull();
});
