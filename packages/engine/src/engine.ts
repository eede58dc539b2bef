import { ModelLoadError, type ModelSpec } from '@kcache/models';
import { DEFAULT_BLOCK_SIZE } from '@kcache/protocol';
import {
  type AttentionBenchOptions,
  type AttentionMode,
  addon,
  type KCacheSettings,
  KV_DTYPES,
  type KvDtype,
  type NativeEngine,
  type NativeEngineInfo,
} from './addon.js';
import { InvalidStepError } from './errors.js';

export interface EngineOptions {
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** Blocks in the KV pool; default: as many as fit in kvCacheBytes. */
  numBlocks?: number;
  /** Device-tier KV budget when numBlocks is not given (default 1 GiB). */
  kvCacheBytes?: number;
  /** Host-tier budget for KCache's V blocks (default: as much as the device tier's blocks need). */
  kvHostBytes?: number;
  /** 'full' (default) or 'kcache': V in the host tier, top-N attention at decode. */
  attention?: AttentionMode;
  kcache?: Partial<KCacheSettings>;
  /** Compute threads (default: all hardware threads). */
  threads?: number;
  /** 'auto' (default), 'cpu' or 'cuda'. */
  backend?: 'auto' | 'cpu' | 'cuda';
  /** Loading progress: bytes of weights read so far and in all (calls may trail the load's end). */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
  /**
   * How the KV cache stores rows (default f32, exact). 'auto' is the serving default
   * (`--kv-cache-dtype`): the weights' 16-bit type (bf16 for bf16 models, else f16), as vLLM's
   * "auto" and llama.cpp's f16, kept f32 on a backend without kernels for it.
   */
  kvDtype?: KvDtype | 'auto';
  /**
   * The offload host tier (a worker's `--offload-bytes`): bytes of host memory the backend copies
   * pool blocks to and from without waiting (pinned on a GPU), in slots of kvBytesPerBlock.
   */
  hostTierBytes?: number;
}

/** The KV dtype a model gets by default: bf16 for bf16 weights, f16 otherwise. */
export function defaultKvDtype(model: ModelSpec): KvDtype {
  const wq = model.tensors.find((t) => t.name === 'layers.0.wq');
  return wq?.dtype === 'bf16' && !wq.quantize ? 'bf16' : 'f16';
}

/** One sequence's part of a batched step. */
export interface SequenceChunk {
  /** New tokens: a prefill chunk, or one decode token. */
  tokens: ArrayLike<number>;
  /** Position of tokens[0] in the sequence; earlier positions must already be in the cache. */
  startPos: number;
  /** Cache blocks of the whole sequence so far (block i holds positions [i*B, (i+1)*B)). */
  blockTable: ArrayLike<number>;
  /** Return logits for every new token (scoring), not only the last. */
  allLogits?: boolean;
  /** KCache: N for this sequence's decode rows (default: the engine's). */
  topN?: number;
}

export interface EngineInfo extends NativeEngineInfo {
  modelId: string;
  vocabSize: number;
  maxSeqLen: number;
}

/**
 * The native engine for one model. `step` runs off the JavaScript thread; one step is in flight
 * at a time (a second call rejects). The caller owns KV block allocation.
 */
export class Engine {
  private readonly numBlocks: number;
  private readonly blockSize: number;

  private constructor(
    private readonly native: NativeEngine,
    readonly model: ModelSpec,
  ) {
    const info = native.info();
    this.numBlocks = info.numBlocks;
    this.blockSize = info.blockSize;
  }

  static async load(model: ModelSpec, opts: EngineOptions = {}): Promise<Engine> {
    const c = model.config;
    const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 1024)
      throw new RangeError(`blockSize must be an integer in 1..1024, got ${blockSize}`);
    const attention = opts.attention ?? 'full';
    if (attention !== 'full' && attention !== 'kcache') throw new RangeError(`attention must be 'full' or 'kcache', got '${attention}'`);
    const kcache = resolveKCache(opts.kcache, c.nLayers);
    const kvDtype = opts.kvDtype === 'auto' ? defaultKvDtype(model) : (opts.kvDtype ?? 'f32');
    if (!KV_DTYPES.includes(kvDtype)) throw new RangeError(`kvDtype must be one of ${KV_DTYPES.join(', ')}, got '${kvDtype}'`);
    const { device, host } = kvBytesPerBlock(c, blockSize, attention, kcache.fullLayers, kvDtype);
    let numBlocks = opts.numBlocks ?? Math.max(1, Math.floor((opts.kvCacheBytes ?? 2 ** 30) / device));
    if (opts.numBlocks === undefined && host > 0 && opts.kvHostBytes !== undefined)
      numBlocks = Math.min(numBlocks, Math.max(1, Math.floor(opts.kvHostBytes / host)));
    try {
      const native = await addon().loadEngine({
        config: c,
        tensors: model.tensors,
        numBlocks,
        blockSize,
        threads: opts.threads ?? 0,
        attention,
        kcache,
        backend: opts.backend,
        onProgress: opts.onProgress,
        kvDtype,
        kvDtypeIsDefault: opts.kvDtype === 'auto',
        kvPoolSizedInBytes: opts.numBlocks === undefined,
        hostTierBytes: opts.hostTierBytes ?? 0,
      });
      return new Engine(native, model);
    } catch (e) {
      throw new ModelLoadError(`${model.id}: ${(e as Error).message}`);
    }
  }

  info(): EngineInfo {
    return {
      ...this.native.info(),
      modelId: this.model.id,
      vocabSize: this.model.config.vocabSize,
      maxSeqLen: this.model.config.maxSeqLen,
    };
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  /**
   * Runs one batched forward step. Returns, per sequence, its logits: one row (last new token)
   * or one row per new token when allLogits is set, as a (rows × vocab) Float32Array.
   */
  async step(chunks: readonly SequenceChunk[]): Promise<Float32Array[]> {
    const rows = chunks.reduce((n, c) => n + c.tokens.length, 0);
    const tableLen = chunks.reduce((n, c) => n + c.blockTable.length, 0);
    const tokens = new Int32Array(rows);
    const positions = new Int32Array(rows);
    const rowSeq = new Int32Array(rows);
    const blockTables = new Int32Array(tableLen);
    const tableOffset = new Int32Array(chunks.length);
    const tableLength = new Int32Array(chunks.length);
    const outputRows: number[] = [];
    const rowsOut: number[] = [];
    const seqTopN = new Int32Array(chunks.length);
    let r = 0;
    let t = 0;
    chunks.forEach((c, s) => {
      this.validate(c, s);
    });
    chunks.forEach((c, s) => {
      for (let i = 0; i < c.tokens.length; i++, r++) {
        tokens[r] = c.tokens[i] as number;
        positions[r] = c.startPos + i;
        rowSeq[r] = s;
        if (c.allLogits || i === c.tokens.length - 1) outputRows.push(r);
      }
      rowsOut.push(c.allLogits ? c.tokens.length : 1);
      seqTopN[s] = c.topN ?? 0;
      tableOffset[s] = t;
      tableLength[s] = c.blockTable.length;
      for (let i = 0; i < c.blockTable.length; i++) blockTables[t++] = c.blockTable[i] as number;
    });
    // Uninitialized memory (the step writes every float): a zero-filled 200 KB buffer a token cost
    // the event loop ~0.15 ms on a 2-vCPU VM, and copying the logits in another 0.05 ms.
    const bytes = Buffer.allocUnsafeSlow(outputRows.length * this.vocabSize * 4);
    const logits = new Float32Array(bytes.buffer, bytes.byteOffset, outputRows.length * this.vocabSize);
    try {
      await this.native.step({
        tokens,
        positions,
        rowSeq,
        blockTables,
        tableOffset,
        tableLength,
        outputRows: Int32Array.from(outputRows),
        seqTopN,
        logits,
      });
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_INVALID_INPUT') throw new InvalidStepError((e as Error).message);
      throw e;
    }
    const v = this.vocabSize;
    const out: Float32Array[] = [];
    let row = 0;
    for (const n of rowsOut) {
      out.push(logits.subarray(row * v, (row + n) * v));
      row += n;
    }
    return out;
  }

  /** Checks one chunk, naming the field at fault; the native side re-checks the flattened batch. */
  private validate(c: SequenceChunk, s: number): void {
    const { vocabSize, maxSeqLen } = this.model.config;
    const fail = (m: string) => {
      throw new InvalidStepError(`chunks[${s}].${m}`);
    };
    if (c.tokens.length === 0) fail('tokens is empty');
    if (!Number.isInteger(c.startPos) || c.startPos < 0) fail(`startPos = ${c.startPos} must be an integer >= 0`);
    if (c.topN !== undefined && (!Number.isInteger(c.topN) || c.topN < 1 || c.topN > 2 ** 31 - 1))
      fail(`topN = ${c.topN} must be a positive integer`);
    for (let i = 0; i < c.tokens.length; i++) {
      const t = c.tokens[i] as number;
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) fail(`tokens[${i}] = ${t} is outside the vocabulary (size ${vocabSize})`);
    }
    const last = c.startPos + c.tokens.length - 1;
    if (last >= maxSeqLen) fail(`tokens reach position ${last}, outside the context (max_seq_len ${maxSeqLen})`);
    const needed = Math.floor(last / this.blockSize) + 1;
    if (c.blockTable.length < needed) fail(`blockTable has ${c.blockTable.length} blocks but position ${last} needs ${needed}`);
    for (let i = 0; i < c.blockTable.length; i++) {
      const b = c.blockTable[i] as number;
      if (!Number.isInteger(b) || b < 0 || b >= this.numBlocks)
        fail(`blockTable[${i}] = ${b} is outside the pool of ${this.numBlocks} blocks`);
    }
  }

  /** A weight as f32 (after dtype conversion), for tests and tools. */
  readWeight(name: string): Float32Array {
    return this.native.readWeight(name);
  }

  /** A weight's bytes as stored, for tools that re-export the model (the benchmark's GGUF writer). */
  readWeightRaw(name: string): Uint8Array {
    return this.native.readWeightRaw(name);
  }

  /**
   * Overwrites every block of the KV cache, both tiers, with uniform random values: for benchmarks
   * of many long sequences whose prefill this machine cannot afford (decode reads the same bytes
   * whatever they hold). Not for serving: every cached prefix is lost.
   */
  fillKvRandom(seed: number): void {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`fillKvRandom: seed = ${seed} must be a non-negative integer`);
    this.native.fillKvRandom(seed);
  }

  /**
   * Copies KV blocks out of the pool, as stored (kvBytesPerBlock bytes each, in the cache's dtype):
   * what an offload tier keeps and a peer sends. Call between steps (it throws while one runs).
   */
  readBlocks(blocks: readonly number[]): Uint8Array {
    return this.native.readBlocks([...blocks]);
  }

  /** Writes blocks copied by readBlocks (this model, KV dtype and block size) into `blocks`. */
  writeBlocks(blocks: readonly number[], data: Uint8Array): void {
    this.native.writeBlocks([...blocks], data);
  }

  /**
   * Copies pool blocks into host tier slots (info().hostTierSlots of them), in the order of the
   * backend's work and without waiting: done before any later step writes those blocks.
   */
  offloadToHost(blocks: readonly number[], slots: readonly number[]): void {
    this.native.offloadToHost([...blocks], [...slots]);
  }

  /** Copies host tier slots into pool blocks, without waiting: done before any later step reads them. */
  reloadFromHost(slots: readonly number[], blocks: readonly number[]): void {
    this.native.reloadFromHost([...slots], [...blocks]);
  }

  /** The slots' bytes (as readBlocks lays a block out), once the copies into them are done. */
  readHostSlots(slots: readonly number[]): Uint8Array {
    return this.native.readHostSlots([...slots]);
  }

  /** Writes blocks' bytes into slots, once no queued copy reads them. */
  writeHostSlots(slots: readonly number[], data: Uint8Array): void {
    this.native.writeHostSlots([...slots], data);
  }

  dispose(): void {
    this.native.dispose();
  }
}

// N = 256 with one full-attention layer: the smallest grid point at >= 99% argmax agreement on
// stories260K (docs/KCACHE.md).
export const DEFAULT_KCACHE: KCacheSettings = { topN: 256, topNFraction: 0, fullLayers: 1, renormalize: true };

/** Fills in and checks KCache settings, naming the field at fault. */
export function resolveKCache(k: Partial<KCacheSettings> | undefined, nLayers: number): KCacheSettings {
  const r = { ...DEFAULT_KCACHE, ...k };
  if (!Number.isInteger(r.topN) || r.topN < 1) throw new RangeError(`kcache topN must be a positive integer, got ${r.topN}`);
  if (!(r.topNFraction >= 0 && r.topNFraction < 1)) throw new RangeError(`kcache topNFraction must be in [0, 1), got ${r.topNFraction}`);
  if (!Number.isInteger(r.fullLayers) || r.fullLayers < 0 || r.fullLayers > nLayers)
    throw new RangeError(`kcache fullLayers must be an integer in 0..${nLayers}, got ${r.fullLayers}`);
  return r;
}

/** KV bytes per block in each tier: KCache layers keep K in the device tier and V in the host tier. */
export function kvBytesPerBlock(
  c: { nKvHeads: number; headDim: number; nLayers: number },
  blockSize: number,
  attention: AttentionMode,
  fullLayers = 0,
  kvDtype: KvDtype = 'f32',
): { device: number; host: number } {
  const kvDim = c.nKvHeads * c.headDim;
  // q8_0: blocks of 32 values in 34 bytes
  const rowBytes = kvDtype === 'f32' ? 4 * kvDim : kvDtype === 'q8_0' ? (kvDim / 32) * 34 : 2 * kvDim;
  const layer = blockSize * rowBytes;
  const kcLayers = attention === 'kcache' ? c.nLayers - fullLayers : 0;
  return { device: layer * (2 * c.nLayers - kcLayers), host: layer * kcLayers };
}

/** Decode attention through every layer on random data, seconds per token for each topNs entry (0: full). */
export function benchDecodeAttention(options: AttentionBenchOptions): Promise<number[]> {
  return addon().benchDecodeAttention(options);
}

/** The CPU kernels' handling of GGML's block-quantized formats (see the addon's declarations). */
export const quantKernels = {
  dequantizeRow: (dtype: string, bytes: Uint8Array, k: number): Float32Array => addon().dequantizeRow(dtype, bytes, k),
  quantizeRow: (dtype: string, values: Float32Array): Uint8Array => addon().quantizeRow(dtype, values),
  matmul: (dtype: string, w: Uint8Array, nOut: number, k: number, x: Float32Array, rows: number): Float32Array =>
    addon().matmulQuantized(dtype, w, nOut, k, x, rows),
  matmulMany: (weights: { dtype: string; w: Uint8Array; nOut: number }[], k: number, x: Float32Array, rows: number): Float32Array[] =>
    addon().matmulMany(weights, k, x, rows),
};

/** Measured memory read bandwidth in bytes/s: the decode roofline's numerator. */
export function measureReadBandwidth(bytes: number, threads: number): Promise<number> {
  return addon().measureReadBandwidth(bytes, threads);
}
