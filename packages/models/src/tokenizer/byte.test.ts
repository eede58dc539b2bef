import { expect, test } from 'vitest';
import { ByteTokenizer } from './byte.js';

test('byte tokenizer round-trips UTF-8 and skips specials', () => {
  const t = new ByteTokenizer(512);
  const ids = t.encode('héllo 🌍', { addBos: true });
  expect(ids[0]).toBe(1);
  expect(ids.slice(1).every((id) => id >= 3 && id < 259)).toBe(true);
  expect(ids).toHaveLength(1 + Buffer.byteLength('héllo 🌍'));
  expect(t.decode([...ids, 2])).toBe('héllo 🌍');
  expect(() => new ByteTokenizer(100)).toThrow(/at least 259/);
});
