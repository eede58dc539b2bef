// The block-quantized kernels of the widest variant this CPU runs (AVX-512 where it has it; the
// generic and AVX2 variants are tested in their own files).

import { testQuantKernels } from './helpers/quant-variant.js';
import { testSamplingKernels } from './helpers/sampling-variant.js';

testQuantKernels('widest');
testSamplingKernels('widest');
