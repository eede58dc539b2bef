import { expect, test } from 'vitest';
import { CircuitBreaker } from './breaker.js';

test('opens after consecutive failures, half-opens after the timeout, one trial at a time', () => {
  let t = 0;
  const b = new CircuitBreaker(2, 100, () => t);
  b.failure();
  expect(b.allow()).toBe(true);
  b.failure();
  expect(b.state).toBe('open');
  expect(b.allow()).toBe(false);
  t = 100;
  expect(b.state).toBe('half_open');
  expect(b.allow()).toBe(true);
  expect(b.allow()).toBe(false);
  b.failure();
  expect(b.state).toBe('open');
  t = 250;
  expect(b.allow()).toBe(true);
  b.success();
  expect(b.state).toBe('closed');
  expect(b.allow()).toBe(true);
});

test('trip opens at once; the next trial after the timeout closes it again', () => {
  let t = 0;
  const b = new CircuitBreaker(3, 100, () => t);
  b.trip();
  expect(b.state).toBe('open');
  expect(b.allow()).toBe(false);
  t = 100;
  expect(b.allow()).toBe(true);
  b.success();
  expect(b.state).toBe('closed');
});
