export type { AttentionMode, KCacheSettings, NativeModelConfig, NativeRope, NativeTensorSpec, WeightDType } from './addon.js';
export {
  benchDecodeAttention,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_KCACHE,
  Engine,
  type EngineInfo,
  type EngineOptions,
  kvBytesPerBlock,
  measureReadBandwidth,
  resolveKCache,
  type SequenceChunk,
} from './engine.js';
export { InvalidStepError, ModelLoadError } from './errors.js';
export { type FinishReason, type GenerateRequest, type GenerateResult, generate } from './generate.js';
export { DUMMY_PRESETS, loadDummy } from './models/dummy.js';
export { loadHfDir } from './models/hf.js';
export { type ResolveOptions, resolveModel } from './models/index.js';
export { loadLlama2c } from './models/llama2c.js';
export { encodeSafetensors, readSafetensorsHeader, type SafetensorsEntry } from './models/safetensors.js';
export type { ModelSpec } from './models/spec.js';
export { Rng } from './sampling/rng.js';
export { argmax, DEFAULT_SAMPLING, type SamplingParams, sample, validateSampling } from './sampling/sample.js';
export { ByteTokenizer } from './tokenizer/byte.js';
export type { Tokenizer } from './tokenizer/types.js';
