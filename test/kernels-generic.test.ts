// The portable kernels, the fallback on CPUs without AVX2/FMA, against the reference.
process.env.KCACHE_SIMD = 'generic';

import { testKCacheAgainstReference, testKernelsAgainstReference } from './helpers/kernel-variant.js';
import { testQuantKernels } from './helpers/quant-variant.js';
import { testSamplingKernels } from './helpers/sampling-variant.js';

testKernelsAgainstReference('generic');
testKCacheAgainstReference('generic');
testQuantKernels('generic');
testSamplingKernels('generic');
