export { type ChatMessage, ChatTemplate, loadChatTemplate } from './chat/template.js';
export { ModelLoadError } from './errors.js';
export { dtypeOfGgmlType, FILE_TYPE, GGML_TYPE, type GgufFile, GgufTokenType, GgufType, type GgufValue } from './gguf/format.js';
export { loadGguf } from './gguf/model.js';
export { readGguf } from './gguf/read.js';
export { type GgufEntry, type GgufTensorOut, writeGgufFile } from './gguf/write.js';
export { DUMMY_PRESETS, loadDummy } from './models/dummy.js';
export { loadHfDir } from './models/hf.js';
export { type ResolveOptions, resolveModel, splitQuantSuffix } from './models/index.js';
export { loadLlama2c } from './models/llama2c.js';
export { encodeSafetensors, readSafetensorsHeader, type SafetensorsEntry } from './models/safetensors.js';
export {
  DTYPE_BLOCK,
  type FloatDType,
  type GenerationDefaults,
  LOAD_QUANT_DTYPES,
  type LoadQuantDType,
  type ModelSpec,
  type NativeModelConfig,
  type NativeRope,
  type NativeTensorSpec,
  type QuantDType,
  quantizeOnLoad,
  quantTypeFor,
  rowBytes,
  type WeightDType,
} from './models/spec.js';
export { ByteTokenizer } from './tokenizer/byte.js';
export type { Tokenizer } from './tokenizer/types.js';
