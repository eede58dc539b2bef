// The block-quantized kernels of the widest variant this CPU runs (AVX-512 where it has it; the
// generic and AVX2 variants are tested in their own files).
import { testArgmax } from './helpers/argmax-variant.js';
import { testQuantKernels } from './helpers/quant-variant.js';

testQuantKernels('widest');
testArgmax('widest');
