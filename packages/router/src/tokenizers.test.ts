import { resolveModel } from '@kcache/models';
import { afterAll, expect, test } from 'vitest';
import { Tokenizers } from './tokenizers.js';

const tokenizers = new Tokenizers({ inlineBytes: 1024 });
afterAll(() => tokenizers.close());

test('a long text is tokenized on a thread to exactly what the inline tokenizer gives; no tokenizer → null', async () => {
  const inline = resolveModel('dummy:tiny').tokenizer;
  const text = 'héllo wörld 🌍 '.repeat(500);
  expect(await tokenizers.encode('dummy:tiny', text)).toEqual(inline?.encode(text, { addBos: true }));
  expect(await tokenizers.encode('dummy:tiny', 'short')).toEqual(inline?.encode('short', { addBos: true }));
  expect(await tokenizers.encode('/no/such/model', text)).toBeNull();
});

test('tokenizing a 4 MB text does not hold the event loop: timers keep firing while it runs', async () => {
  const text = 'hello world, this is a test. '.repeat(140_000);
  const inline = resolveModel('dummy:tiny').tokenizer;
  let t = performance.now();
  const expected = inline?.encode(text, { addBos: true });
  const blockedMs = performance.now() - t; // what the same text costs on the event loop
  await tokenizers.encode('dummy:tiny', 'x'.repeat(2048)); // the thread is up
  let longestGap = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
  }, 5);
  t = performance.now();
  const ids = await tokenizers.encode('dummy:tiny', text);
  const threadMs = performance.now() - t;
  clearInterval(tick);
  expect(ids).toEqual(expected);
  expect(threadMs).toBeGreaterThan(blockedMs / 2); // it did real work meanwhile
  expect(longestGap).toBeLessThan(blockedMs / 2);
});
