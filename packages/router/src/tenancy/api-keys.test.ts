import { expect, test } from 'vitest';
import { ApiKeys, bearerToken, parseApiKeyLines } from './api-keys.js';

const K1 = 'k1-0123456789abcdef';
const K2 = 'k2-0123456789abcdef';

test('a keys file: key, tenant, optional limits, comments and blank lines; lookups by key', () => {
  const keys = ApiKeys.parse(`# team keys\n${K1} acme\n\n${K2}   beta.ai 5 2000  # limited\n`, 'keys.txt');
  expect(keys.size).toBe(2);
  expect(keys.tenant(K1)).toEqual({ id: 'acme', requestsPerS: undefined, tokensPerS: undefined });
  expect(keys.tenant(K2)).toEqual({ id: 'beta.ai', requestsPerS: 5, tokensPerS: 2000 });
  expect(keys.tenant('k3-0123456789abcdef')).toBeNull();
  expect(keys.tenant('')).toBeNull();
});

test.each([
  [`${K1}\n`, "keys.txt:1: expected '<key> <tenant> [requests_per_s [tokens_per_s]]'"],
  ['short acme\n', 'keys.txt:1: the key is shorter than 16 characters'],
  [`${K1} acme\n${K1} beta\n`, 'keys.txt:2: this key is listed twice'],
  [`${K1} ac/me\n`, "keys.txt:1: tenant 'ac/me' must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"],
  [`${K1} acme fast\n`, "keys.txt:1: requests_per_s 'fast' is not a number ≥ 0"],
  [`${K1} acme 1 2 3\n`, "keys.txt:1: expected '<key> <tenant> [requests_per_s [tokens_per_s]]'"],
  ['# nothing\n', "keys.txt: no keys (one '<key> <tenant>' per line)"],
])('%j is refused: %s', (text, message) => {
  expect(() => parseApiKeyLines(text, 'keys.txt')).toThrow(message);
});

test('bearer tokens: exactly one "Bearer <key>" header', () => {
  expect(bearerToken([`Bearer ${K1}`])).toBe(K1);
  expect(bearerToken([`bearer  ${K1} `])).toBe(K1);
  expect(bearerToken([])).toBeNull();
  expect(bearerToken([K1])).toBeNull();
  expect(bearerToken([`Basic ${K1}`])).toBeNull();
  expect(bearerToken([`Bearer ${K1}`, `Bearer ${K2}`])).toBeNull();
});
