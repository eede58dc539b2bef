import { expect, test } from 'vitest';
import { TenantLimits, TokenBucket } from './rate-limit.js';

test('a token bucket holds one second of its rate and refills with time', () => {
  const b = new TokenBucket(2, 0);
  expect(b.take(1, 0)).toBe(true);
  expect(b.take(1, 0)).toBe(true);
  expect(b.take(1, 0)).toBe(false);
  expect(b.waitMs(1, 0)).toBe(500);
  expect(b.take(1, 499)).toBe(false);
  expect(b.take(1, 500)).toBe(true);
  expect(b.take(1, 10_000)).toBe(true); // no more than its burst after a long idle
  expect(b.take(1, 10_000)).toBe(true);
  expect(b.take(1, 10_000)).toBe(false);
});

test('tenant limits: requests and tokens per second, per tenant; a tenant in token debt waits; others are unaffected', () => {
  let now = 0;
  const limits = new TenantLimits({ requestsPerS: 2, tokensPerS: 100 }, () => now);
  expect(limits.admit('a', {}, 10)).toEqual({ ok: true });
  expect(limits.admit('a', {}, 10)).toEqual({ ok: true });
  expect(limits.admit('a', {}, 10)).toEqual({ ok: false, what: 'requests', retryAfterMs: 500 });
  expect(limits.admit('b', {}, 10)).toEqual({ ok: true }); // b has its own buckets
  now = 1000;
  limits.charge('a', {}, 200); // a's outputs: 100 + 20 + 200 > 100 tokens in ~1 s
  expect(limits.admit('a', {}, 1)).toMatchObject({ ok: false, what: 'tokens' });
  expect(limits.admit('b', {}, 1)).toEqual({ ok: true });
  now = 4000; // refilled (to its one-second burst)
  expect(limits.admit('a', {}, 1)).toEqual({ ok: true });
  // a key's own limits win over the defaults; 0 means unlimited
  const own = { requestsPerS: 0, tokensPerS: 0 };
  for (let i = 0; i < 50; i++) expect(limits.admit('c', own, 1000)).toEqual({ ok: true });
});

test('a refused request gives its prompt tokens back', () => {
  let now = 0;
  const limits = new TenantLimits({ requestsPerS: 1, tokensPerS: 10 }, () => now);
  expect(limits.admit('a', {}, 6)).toEqual({ ok: true }); // 4 tokens left, no request
  expect(limits.admit('a', {}, 3)).toMatchObject({ ok: false, what: 'requests' }); // its 3 tokens come back
  limits.charge('a', {}, 8); // 4 - 8 = -4 (-7 had the 3 stayed taken)
  now = 500; // +5 tokens: 1 (or -2), +0.5 request
  expect(limits.admit('a', {}, 1)).toMatchObject({ ok: false, what: 'requests' });
});
