import { ModelLoadError } from '../errors.js';
import { BYTE_TOKENIZER_SPECIALS, ByteTokenizer } from '../tokenizer/byte.js';
import {
  type FloatDType,
  LOAD_QUANT_DTYPES,
  type LoadQuantDType,
  layerTensor,
  type ModelSpec,
  type NativeModelConfig,
  type NativeTensorSpec,
  quantTypeFor,
  type WeightDType,
} from './spec.js';

type Shape = Pick<NativeModelConfig, 'dim' | 'hiddenDim' | 'nLayers' | 'nHeads' | 'nKvHeads' | 'vocabSize' | 'maxSeqLen'> & {
  tied: boolean;
  theta: number;
};

/** Random weights of real model shapes, like vLLM's `--load-format dummy`. */
export const DUMMY_PRESETS: Record<string, Shape> = {
  tiny: { dim: 64, hiddenDim: 176, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 512, maxSeqLen: 2048, tied: true, theta: 10000 },
  // SmolLM-135M's shape
  smol135: { dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, vocabSize: 49152, maxSeqLen: 8192, tied: true, theta: 10000 },
  // a Llama-architecture 1B (TinyLlama-like width, 16 layers)
  llama1b: {
    dim: 2048,
    hiddenDim: 8192,
    nLayers: 16,
    nHeads: 32,
    nKvHeads: 8,
    vocabSize: 32000,
    maxSeqLen: 8192,
    tied: false,
    theta: 10000,
  },
};

const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'bf16', 'f16'];

/**
 * `dummy:<preset>[:<dtype>]`, e.g. `dummy:smol135:bf16`; a quantized type (`dummy:smol135:q8_0`)
 * generates f32 values the engine quantizes as it loads (norms stay f32, as in GGUF files).
 */
export function loadDummy(ref: string, opts: { dtype?: WeightDType; seed?: number } = {}): ModelSpec {
  const [, presetName = '', dtypePart] = ref.split(':');
  const preset = DUMMY_PRESETS[presetName];
  if (!preset) {
    throw new ModelLoadError(`${ref}: unknown dummy preset '${presetName}' (known: ${Object.keys(DUMMY_PRESETS).join(', ')})`);
  }
  const dtype = (dtypePart ?? opts.dtype ?? 'f32') as WeightDType;
  const quant = LOAD_QUANT_DTYPES.includes(dtype as LoadQuantDType) ? (dtype as LoadQuantDType) : null;
  if (!quant && !FLOAT_DTYPES.includes(dtype as FloatDType))
    throw new ModelLoadError(`${ref}: unsupported dtype '${dtype}' (use ${[...FLOAT_DTYPES, ...LOAD_QUANT_DTYPES].join(', ')})`);
  const stored: FloatDType = quant ? 'f32' : (dtype as FloatDType);
  const seed = opts.seed ?? 1234;
  const headDim = preset.dim / preset.nHeads;
  const qDim = preset.nHeads * headDim;
  const kvDim = preset.nKvHeads * headDim;
  const tensors: NativeTensorSpec[] = [];
  const quantize = (cols: number) => {
    const q = quant ? quantTypeFor(quant, cols) : null;
    return q ? { quantize: q } : {};
  };
  const matrix = (name: string, rows: number, cols: number, scale = 1 / Math.sqrt(cols)) =>
    tensors.push({ name, dtype: stored, rows, cols, seed, scale, ...quantize(cols) });
  const norm = (name: string, n: number) => tensors.push({ name, dtype: stored, rows: 1, cols: n, seed, scale: 0.1, shift: 1 });

  matrix('tok_embeddings', preset.vocabSize, preset.dim, 1);
  for (let l = 0; l < preset.nLayers; l++) {
    norm(layerTensor(l, 'attention_norm'), preset.dim);
    matrix(layerTensor(l, 'wq'), qDim, preset.dim);
    matrix(layerTensor(l, 'wk'), kvDim, preset.dim);
    matrix(layerTensor(l, 'wv'), kvDim, preset.dim);
    matrix(layerTensor(l, 'wo'), preset.dim, qDim);
    norm(layerTensor(l, 'ffn_norm'), preset.dim);
    matrix(layerTensor(l, 'w1'), preset.hiddenDim, preset.dim);
    matrix(layerTensor(l, 'w2'), preset.dim, preset.hiddenDim);
    matrix(layerTensor(l, 'w3'), preset.hiddenDim, preset.dim);
  }
  norm('norm', preset.dim);
  if (!preset.tied) matrix('output', preset.vocabSize, preset.dim);

  return {
    id: `dummy:${presetName}:${dtype}`,
    format: 'dummy',
    config: {
      dim: preset.dim,
      hiddenDim: preset.hiddenDim,
      nLayers: preset.nLayers,
      nHeads: preset.nHeads,
      nKvHeads: preset.nKvHeads,
      headDim,
      vocabSize: preset.vocabSize,
      maxSeqLen: preset.maxSeqLen,
      normEps: 1e-5,
      qkvBias: false,
      rope: { style: 'half-split', theta: preset.theta },
    },
    tensors,
    tokenizer: new ByteTokenizer(preset.vocabSize),
    bosTokenId: BYTE_TOKENIZER_SPECIALS.bos,
    eosTokenIds: [BYTE_TOKENIZER_SPECIALS.eos],
  };
}
