import type { NativeModelConfig, NativeTensorSpec } from '../addon.js';
import type { Tokenizer } from '../tokenizer/types.js';

/** Everything needed to build an engine for one model, independent of where it came from. */
export interface ModelSpec {
  /** Stable identifier (enters the KV block hashes): `dummy:tiny:f32`, a file path, a directory. */
  id: string;
  format: 'dummy' | 'llama2c' | 'hf';
  config: NativeModelConfig;
  tensors: NativeTensorSpec[];
  /** Null when the model ships none (llama2.c checkpoints): use token ids. */
  tokenizer: Tokenizer | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** Canonical tensor names the native engine expects, for layer `l`. */
export const layerTensor = (l: number, name: string): string => `layers.${l}.${name}`;
