export { type AttentionMode, type KCacheSettings, KV_DTYPES, type KvDtype } from './addon.js';
export {
  benchDecodeAttention,
  DEFAULT_KCACHE,
  defaultKvDtype,
  Engine,
  type EngineInfo,
  type EngineOptions,
  kvBytesPerBlock,
  measureReadBandwidth,
  quantKernels,
  resolveKCache,
  type SequenceChunk,
} from './engine.js';
export { InvalidStepError } from './errors.js';
export { type FinishReason, type GenerateRequest, type GenerateResult, generate } from './generate.js';
export { argmaxReference, sampleReference } from './sampling/reference.js';
export { Rng } from './sampling/rng.js';
export { argmax, expWeights, type SamplingParams, sample, validateSampling } from './sampling/sample.js';
