// KCache's top-N selection (native/cpu/kth_largest.h): the k-th largest of a row's sampled and
// candidate scores, bit by bit on integer keys, against std::nth_element on 100,000 random arrays
// with ties, signed zeros and subnormals (native/test/kth_largest_test.cpp, built by `pnpm build`).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('the k-th largest equals std::nth_element on every case', () => {
  const out = execFileSync(join(REPO_ROOT, 'native/build/kcache_select_test'), ['100000'], { encoding: 'utf8', timeout: 120_000 });
  expect(out).toContain('100000 cases, 0 wrong');
});
