// KCache's top-N selection (native/cpu/kth_largest.h, and the AVX-512 kernel of it): the k-th
// largest of a row's sampled and candidate scores, bit by bit on integer keys, against
// std::nth_element on 100,000 random arrays with ties, signed zeros and subnormals
// (native/test/kth_largest_test.cpp, built by `pnpm build`).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('the k-th largest equals std::nth_element on every case', () => {
  const out = execFileSync(join(REPO_ROOT, 'native/build/kcache_select_test'), ['100000'], { encoding: 'utf8', timeout: 120_000 });
  expect(out).toMatch(/^100000 cases, \d+ selections \(kth_largest\.h[^)]*\), 0 wrong$/m);
  // on a CPU with AVX-512 its kernel is among them
  if (/avx512/.test(readFileSync('/proc/cpuinfo', 'utf8')))
    expect(out).toMatch(/selections \(kth_largest\.h, avx512, avx512vnni|selections \(kth_largest\.h, avx512\)/);
});
