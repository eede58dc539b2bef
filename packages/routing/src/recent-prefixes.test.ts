import { expect, test } from 'vitest';
import { RecentPrefixes } from './recent-prefixes.js';

test('remembers where prefixes went, longest leading run, bounded LRU', () => {
  const r = new RecentPrefixes(4);
  r.record(['a', 'b', 'c'], 'w1');
  expect(r.match(['a', 'b', 'x'])).toEqual(new Map([['w1', 2]]));
  r.record(['a', 'b', 'd'], 'w2'); // the latest routing of a shared prefix wins
  expect(r.match(['a', 'b', 'c'])).toEqual(new Map([['w2', 2]]));
  expect(r.match(['z'])).toEqual(new Map());
  r.record(['e'], 'w3'); // capacity 4: 'c' (least recent) is forgotten
  expect(r.match(['c'])).toEqual(new Map());
  r.forgetWorker('w2');
  expect(r.match(['a'])).toEqual(new Map());
});
