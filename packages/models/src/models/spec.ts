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

export type FloatDType = 'f32' | 'bf16' | 'f16';
/** GGML's block-quantized types (the layouts of llama.cpp's ggml-common.h). */
export type QuantDType = 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q4_k' | 'q5_k' | 'q6_k';
export type WeightDType = FloatDType | QuantDType;
/** What quantize-on-load (`--quantize`, `dummy:<preset>:<type>`) can write. */
export type LoadQuantDType = 'q8_0' | 'q4_0' | 'q5_0' | 'q4_k';
export const LOAD_QUANT_DTYPES: readonly LoadQuantDType[] = ['q8_0', 'q4_0', 'q5_0', 'q4_k'];
/** Values per block of each type (1 for float types), and bytes per block. */
export const DTYPE_BLOCK: Record<WeightDType, { values: number; bytes: number }> = {
  f32: { values: 1, bytes: 4 },
  bf16: { values: 1, bytes: 2 },
  f16: { values: 1, bytes: 2 },
  q8_0: { values: 32, bytes: 34 },
  q4_0: { values: 32, bytes: 18 },
  q4_1: { values: 32, bytes: 20 },
  q5_0: { values: 32, bytes: 22 },
  q5_1: { values: 32, bytes: 24 },
  q4_k: { values: 256, bytes: 144 },
  q5_k: { values: 256, bytes: 176 },
  q6_k: { values: 256, bytes: 210 },
};
export const rowBytes = (dtype: WeightDType, cols: number): number => (cols / DTYPE_BLOCK[dtype].values) * DTYPE_BLOCK[dtype].bytes;

/**
 * The type a matrix of `cols` columns gets when quantized to `target`: the target where whole
 * blocks fit, else llama.cpp's fallback (q4_k -> q5_0 for rows that are not whole super-blocks
 * of 256), else null (kept in its float type, as llama.cpp keeps such tensors).
 */
export function quantTypeFor(target: LoadQuantDType, cols: number): LoadQuantDType | null {
  if (cols % DTYPE_BLOCK[target].values === 0) return target;
  if (target === 'q4_k' && cols % 32 === 0) return 'q5_0';
  return null;
}

/** `spec` with its float matrices quantized to `target` as the engine loads them; the id says so. */
export function quantizeOnLoad(spec: ModelSpec, target: LoadQuantDType): ModelSpec {
  const tensors = spec.tensors.map((t) => {
    if (t.rows <= 1 || DTYPE_BLOCK[t.dtype].values > 1) return t;
    const q = quantTypeFor(target, t.cols);
    return q ? { ...t, quantize: q } : t;
  });
  return { ...spec, id: `${spec.id}#${target}`, tensors };
}

/**
 * A weight tensor: a region of a file (memory-mapped) or deterministic random values; with
 * `quantize`, a float tensor the engine converts to that block-quantized type as it loads.
 */
export type NativeTensorSpec = {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
  quantize?: LoadQuantDType;
} & ({ file: string; offset: number } | { seed: number; scale: number; shift?: number });

/** Everything needed to build an engine for one model, independent of where it came from. */
export interface ModelSpec {
  /** Stable identifier (enters the KV block hashes): `dummy:tiny:f32`, a file path, a directory. */
  id: string;
  format: 'dummy' | 'llama2c' | 'hf' | 'gguf';
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
