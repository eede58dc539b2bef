export { ModelLoadError } from './errors.js';
export { DUMMY_PRESETS, loadDummy } from './models/dummy.js';
export { loadHfDir } from './models/hf.js';
export { type ResolveOptions, resolveModel } from './models/index.js';
export { loadLlama2c } from './models/llama2c.js';
export { encodeSafetensors, readSafetensorsHeader, type SafetensorsEntry } from './models/safetensors.js';
export type { ModelSpec, NativeModelConfig, NativeRope, NativeTensorSpec, WeightDType } from './models/spec.js';
export { ByteTokenizer } from './tokenizer/byte.js';
export type { Tokenizer } from './tokenizer/types.js';
