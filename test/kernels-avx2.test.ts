// The AVX2/FMA kernels, used on CPUs without AVX-512, against the reference.
process.env.KCACHE_SIMD = 'avx2';

import { testArgmax } from './helpers/argmax-variant.js';
import { testKCacheAgainstReference, testKernelsAgainstReference } from './helpers/kernel-variant.js';
import { testQuantKernels } from './helpers/quant-variant.js';

testKernelsAgainstReference('avx2');
testKCacheAgainstReference('avx2');
testQuantKernels('avx2');
testArgmax('avx2');
