import { expect, test } from 'vitest';
import { continuation } from './migrate.js';

test('a continuation carries the prompt, then the tokens sent, marked as generated, with the text length sent', () => {
  const original = { requestId: 'r', tokenIds: [1, 5, 6], stop: { maxTokens: 10, stop: ['END'] }, sampling: { temperature: 0.7, seed: 3 } };
  expect(continuation(original, { tokens: [], textLen: 0, migrations: 0 })).toBe(original);
  const next = continuation(original, { tokens: [9, 8], textLen: 5, migrations: 1 });
  expect(next).toEqual({ ...original, tokenIds: [1, 5, 6, 9, 8], resumeGenerated: 2, resumeTextLen: 5 });
  expect(original.tokenIds).toEqual([1, 5, 6]); // the original is kept for the next migration
});
