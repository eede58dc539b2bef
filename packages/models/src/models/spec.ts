import type { Tokenizer } from '../tokenizer/types.js';

/** The model's shape as the native engine takes it. */
export interface NativeRope {
  style: 'interleaved' | 'half-split';
  theta: number;
  llama3Factor?: number;
  llama3LowFreqFactor?: number;
  llama3HighFreqFactor?: number;
  llama3OriginalMaxPos?: number;
}

export interface NativeModelConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxSeqLen: number;
  normEps: number;
  qkvBias: boolean;
  rope: NativeRope;
}

export type WeightDType = 'f32' | 'bf16' | 'f16';

/** A weight tensor: a region of a file (memory-mapped) or deterministic random values. */
export type NativeTensorSpec = {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
} & ({ file: string; offset: number } | { seed: number; scale: number; shift?: number });

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
  /** Sampling defaults the model ships (generation_config.json): used where a request leaves a field unset. */
  generationDefaults?: GenerationDefaults;
}

export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
}

/** Canonical tensor names the native engine expects, for layer `l`. */
export const layerTensor = (l: number, name: string): string => `layers.${l}.${name}`;
