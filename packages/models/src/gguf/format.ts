// GGUF (v2/v3), llama.cpp's model file: a header of typed key/value metadata and tensor
// descriptions, then the tensors' data, each at an aligned offset. Read and written by hand:
// the npm GGUF packages only read, and read the whole header into JavaScript values without the
// byte offsets a memory-mapping engine needs.
import type { WeightDType } from '../models/spec.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types. */
export enum GgufType {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

/** GGML tensor type ids (ggml.h's enum ggml_type) of the types kcache runs. */
export const GGML_TYPE: Record<WeightDType, number> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q5_0: 6,
  q5_1: 7,
  q8_0: 8,
  q4_k: 12,
  q5_k: 13,
  q6_k: 14,
  bf16: 30,
};
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  6: 'Q5_0',
  7: 'Q5_1',
  8: 'Q8_0',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  30: 'BF16',
  34: 'TQ1_0',
  35: 'TQ2_0',
  39: 'MXFP4',
};
export const dtypeOfGgmlType = (id: number): WeightDType | undefined =>
  (Object.entries(GGML_TYPE) as [WeightDType, number][]).find(([, v]) => v === id)?.[0];

/** llama.cpp's general.file_type (enum llama_ftype) for a file whose matrices are mostly `dtype`. */
export const FILE_TYPE: Partial<Record<WeightDType, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  q4_k: 15,
  q5_k: 17,
  q6_k: 18,
  bf16: 32,
};

/** tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
export enum GgufTokenType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ne[0] first: the fastest-varying dimension (a matrix's columns). */
  dims: number[];
  ggmlType: number;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
}
