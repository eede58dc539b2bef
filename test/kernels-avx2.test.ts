// The AVX2/FMA kernels, used on CPUs without AVX-512, against the reference.
process.env.KCACHE_SIMD = 'avx2';

import { testKCacheAgainstReference, testKernelsAgainstReference } from './helpers/kernel-variant.js';
import { testQuantKernels } from './helpers/quant-variant.js';
import { testSamplingKernels } from './helpers/sampling-variant.js';

testKernelsAgainstReference('avx2');
testKCacheAgainstReference('avx2');
testQuantKernels('avx2');
testSamplingKernels('avx2');
