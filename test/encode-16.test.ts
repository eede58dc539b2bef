// The KV cache's f16/bf16 store in each x86 SIMD variant (encode_16, native/cpu/arch/simd_kernels.h)
// against the reference rounding (encode_row), bit for bit on 5 million floats: every upper half of
// the bits with lower halves on and around both formats' rounding points, NaNs, infinities,
// subnormals and random patterns (native/test/encode_test.cpp, built by `pnpm build`).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

test('every x86 variant rounds f16 and bf16 as the reference does', () => {
  const out = execFileSync(join(REPO_ROOT, 'native/build/kcache_encode_test'), { encoding: 'utf8', timeout: 120_000 });
  expect(out).toMatch(/^[1-9]\d* variants, 0 wrong$/m);
});
