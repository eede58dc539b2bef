// The 16-bit KV cache kernels of every variant this CPU runs (native/test/kv16_test.cpp, built by
// `pnpm build`), bit for bit: the f16/bf16 store (encode_16) against the reference rounding on 5
// million floats (every upper half of the bits with lower halves on and around both formats'
// rounding points, NaNs, infinities, subnormals, random patterns), and KCache's weighted sum over
// kept rows read as stored against the same sum over the rows widened to f32.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('every variant stores and sums 16-bit KV rows as its reference does', () => {
  const out = execFileSync(join(REPO_ROOT, 'native/build/kcache_kv16_test'), { encoding: 'utf8', timeout: 120_000 });
  expect(out).toMatch(/^generic: weighted sums, 0 wrong$/m);
  expect(out).toMatch(/^[2-9] variants, 0 wrong$/m);
});
