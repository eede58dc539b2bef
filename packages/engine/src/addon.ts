// The one place that knows a native addon exists. Its whole surface is described here.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeModelConfig, NativeTensorSpec } from '@kcache/models';

export type AttentionMode = 'full' | 'kcache';

/** KCache attention settings (see docs/KCACHE.md). */
export interface KCacheSettings {
  /** N: value rows kept per query head at decode (used when topNFraction is 0). */
  topN: number;
  /** > 0: N = ceil(fraction × context) instead of topN. */
  topNFraction: number;
  /** The first L layers keep full attention with V in the device tier. */
  fullLayers: number;
  /** Softmax over the kept scores (true) or their share of the full softmax (false). */
  renormalize: boolean;
}

/** KV cache row formats (`--kv-cache-dtype`). */
export type KvDtype = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const KV_DTYPES: readonly KvDtype[] = ['f32', 'f16', 'bf16', 'q8_0'];

export interface NativeLoadOptions {
  config: NativeModelConfig;
  tensors: NativeTensorSpec[];
  numBlocks: number;
  blockSize: number;
  threads?: number;
  attention?: AttentionMode;
  kcache?: Partial<KCacheSettings>;
  /** 'auto' (default: CUDA when built with it and a GPU is visible, else CPU; KCACHE_BACKEND overrides), 'cpu' or 'cuda'. */
  backend?: 'auto' | 'cpu' | 'cuda';
  /** Called on this thread as weights are placed: bytes read so far and in all (as stored). */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
  /** How the KV cache stores rows: f32, f16, bf16 or q8_0. */
  kvDtype?: KvDtype;
  /** kvDtype is the default: a backend without it stores f32 (in fewer blocks when kvPoolSizedInBytes). */
  kvDtypeIsDefault?: boolean;
  kvPoolSizedInBytes?: boolean;
  /** The offload host tier's bytes (slots of kvBytesPerBlock; 0: none). */
  hostTierBytes?: number;
}

/** One batched step; rows are the new tokens of all sequences, concatenated. */
export interface NativeStepBatch {
  tokens: Int32Array;
  positions: Int32Array;
  rowSeq: Int32Array;
  blockTables: Int32Array;
  tableOffset: Int32Array;
  tableLength: Int32Array;
  outputRows: Int32Array;
  /** KCache N per sequence (0: the engine's default). */
  seqTopN?: Int32Array;
  /** Where the step writes the logits (outputRows.length × vocab), every float. */
  logits: Float32Array;
}

export interface NativeEngineInfo {
  /** e.g. "cpu/avx512" or "cuda/NVIDIA H100 80GB HBM3". */
  backend: string;
  /** Why this backend, e.g. "cpu: no CUDA device". */
  backendNote: string;
  threads: number;
  numBlocks: number;
  blockSize: number;
  /** Both tiers. */
  kvBytesPerBlock: number;
  /** How the KV cache stores rows. */
  kvDtype: KvDtype;
  /** K of every layer and V of full-attention layers. */
  kvDeviceBytesPerBlock: number;
  /** V of KCache layers (0 in full mode). */
  kvHostBytesPerBlock: number;
  /** Slots of the offload host tier (hostTierBytes / kvBytesPerBlock). */
  hostTierSlots: number;
  attention: AttentionMode;
  kcache?: KCacheSettings;
  weightBytes: number;
}

export interface AttentionBenchOptions {
  nLayers?: number;
  nHeads?: number;
  nKvHeads?: number;
  headDim?: number;
  blockSize?: number;
  context: number;
  threads?: number;
  iters?: number;
  renormalize?: boolean;
  /** How the caches store rows (default f32). */
  kvDtype?: string;
  /** 0: full attention; N > 0: KCache top-N. */
  topNs: number[];
}

export interface NativeEngine {
  /** Resolves once batch.logits holds the logits. Rejects with code ERR_INVALID_INPUT on bad input. */
  step(batch: NativeStepBatch): Promise<void>;
  info(): NativeEngineInfo;
  readWeight(name: string): Float32Array;
  /** The tensor's bytes as held (f32, bf16, f16, or GGML blocks for a quantized type). */
  readWeightRaw(name: string): Uint8Array;
  /** Overwrites every KV block of every layer with uniform random values. */
  fillKvRandom(seed: number): void;
  /** The blocks' bytes as stored, each kvBytesPerBlock long (every layer's K rows, then V rows). */
  readBlocks(blocks: number[]): Uint8Array;
  /** Writes blocks read by readBlocks (from an engine of the same model, dtype and block size). */
  writeBlocks(blocks: number[], data: Uint8Array): void;
  offloadToHost(blocks: number[], slots: number[]): void;
  reloadFromHost(slots: number[], blocks: number[]): void;
  readHostSlots(slots: number[]): Uint8Array;
  writeHostSlots(slots: number[], data: Uint8Array): void;
  dispose(): void;
}

interface Addon {
  loadEngine(options: NativeLoadOptions): Promise<NativeEngine>;
  /** argmaxReference's index (sampling/reference.ts), by the CPU kernels in use. */
  argmax(logits: Float32Array): number;
  /** out[i] = exp((logits[i] − max) / temperature) in float32 by the CPU kernels in use; 0 for −Infinity. */
  expWeights(logits: Float32Array, max: number, temperature: number, out: Float32Array): void;
  /** Best-of-several read bandwidth in bytes/s over a buffer of `bytes`, with `threads` threads. */
  measureReadBandwidth(bytes: number, threads: number): Promise<number>;
  /** Best seconds per token of one decode row's attention through every layer, per topNs entry. */
  benchDecodeAttention(options: AttentionBenchOptions): Promise<number[]>;
  /** One row of `k` values stored as `dtype`, dequantized by the CPU kernels in use. */
  dequantizeRow(dtype: string, bytes: Uint8Array, k: number): Float32Array;
  /** `values` as one row of `dtype` blocks (q8_0, q4_0, q5_0, q4_k): quantize-on-load's quantizer. */
  quantizeRow(dtype: string, values: Float32Array): Uint8Array;
  /** x[rows, k] · wᵀ for w = nOut rows of `dtype` blocks, by the CPU backend's matmul: [rows, nOut]. */
  matmulQuantized(dtype: string, w: Uint8Array, nOut: number, k: number, x: Float32Array, rows: number): Float32Array;
  /** The same for several weights of the same k in one call (the backend's matmul_multi): one [rows, nOut] each. */
  matmulMany(weights: { dtype: string; w: Uint8Array; nOut: number }[], k: number, x: Float32Array, rows: number): Float32Array[];
}

function addonPath(): string {
  const fromEnv = process.env.KCACHE_ADDON;
  if (fromEnv) return fromEnv;
  // packages/engine/{src,dist}/addon.* -> repo root
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return resolve(root, 'native', 'build', 'Release', 'kcache_engine.node');
}

let cached: Addon | undefined;

export function addon(): Addon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new Error(`native engine not built: ${path} is missing (run \`pnpm build\`)`);
  }
  cached = createRequire(import.meta.url)(path) as Addon;
  return cached;
}
