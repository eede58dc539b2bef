import { expect, test } from 'vitest';
import { percentile, STALL_MS, type StreamResult, tally } from './faults-bench.js';

const r = (status: string, tokens: number, finish = 'length', longestWaitMs = 10): StreamResult => ({
  status,
  tokens: Array.from({ length: tokens }, (_, i) => i),
  finish,
  migrations: 0,
  longestWaitMs,
  elapsedMs: 100,
});

test('tally: completed needs OK with every token; OK but short or no end is lost; other statuses are failed by name', () => {
  const t = tally(
    [r('OK', 8), r('OK', 5, 'abort'), r('LOST', 2), r('UNAVAILABLE', 0), r('UNAVAILABLE', 3), r('OK', 8, 'length', STALL_MS + 1)],
    [8, 8, 8, 8, 8, 8],
  );
  expect(t).toEqual({ sent: 6, completed: 2, failed: { UNAVAILABLE: 2 }, stalled: 1, lost: 2 });
});

test('percentile: nearest rank', () => {
  const v = Array.from({ length: 100 }, (_, i) => 100 - i);
  expect(percentile(v, 50)).toBe(50);
  expect(percentile(v, 99)).toBe(99);
  expect(percentile([7], 99)).toBe(7);
  expect(percentile([], 50)).toBeNaN();
});
