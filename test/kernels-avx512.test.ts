// The AVX-512 variant without VNNI (its integer path is the AVX2 one), used on AVX-512 CPUs without
// VNNI (Skylake-X, Cascade Lake has it): on a CPU with VNNI the widest variant, tested by
// kernels-quant.test.ts, is avx512vnni, whose quantized matmul differs; the float kernels are the same.
process.env.KCACHE_SIMD = 'avx512';

import { testQuantKernels } from './helpers/quant-variant.js';
import { testSamplingKernels } from './helpers/sampling-variant.js';

testQuantKernels('avx512');
testSamplingKernels('avx512');
