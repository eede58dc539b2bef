import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModelLoadError } from '../errors.js';
import { layerTensor, type ModelSpec, type NativeTensorSpec } from './spec.js';

const HEADER_BYTES = 7 * 4;

/**
 * A llama2.c "legacy" checkpoint: 7 int32 header fields, then f32 tensors in a fixed order
 * (see shared/models/README.md). A negative vocab size means an unshared classifier, stored
 * last, after the two unused RoPE tables.
 */
export function loadLlama2c(path: string): ModelSpec {
  const file = resolve(path);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new ModelLoadError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let size: number;
  const header = Buffer.alloc(HEADER_BYTES);
  try {
    size = fstatSync(fd).size;
    if (size < HEADER_BYTES) throw new ModelLoadError(`${file}: truncated: ${size} bytes is shorter than the 28-byte llama2.c header`);
    readSync(fd, header, 0, HEADER_BYTES, 0);
  } finally {
    closeSync(fd);
  }
  const [dim, hidden, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = Array.from({ length: 7 }, (_, i) => header.readInt32LE(i * 4)) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const vocab = Math.abs(rawVocab);
  const shared = rawVocab > 0;
  const plausible = [dim, hidden, nLayers, nHeads, nKvHeads, vocab, seqLen].every((v) => v > 0 && v < 1 << 24);
  if (!plausible || dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new ModelLoadError(
      `${file}: not a llama2.c checkpoint (header dim=${dim} hidden=${hidden} layers=${nLayers} heads=${nHeads} kv_heads=${nKvHeads} vocab=${rawVocab} seq_len=${seqLen})`,
    );
  }
  const headDim = dim / nHeads;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;

  const tensors: NativeTensorSpec[] = [];
  let offset = HEADER_BYTES;
  // Tensors are stored stacked over layers: each block below holds all layers' copies in turn.
  const add = (name: string, rows: number, cols: number) => {
    tensors.push({ name, dtype: 'f32', rows, cols, file, offset });
    offset += rows * cols * 4;
  };
  const stacked = (name: string, rows: number, cols: number) => {
    for (let l = 0; l < nLayers; l++) add(layerTensor(l, name), rows, cols);
  };
  add('tok_embeddings', vocab, dim);
  stacked('attention_norm', 1, dim);
  stacked('wq', qDim, dim);
  stacked('wk', kvDim, dim);
  stacked('wv', kvDim, dim);
  stacked('wo', dim, qDim);
  stacked('ffn_norm', 1, dim);
  stacked('w1', hidden, dim);
  stacked('w2', dim, hidden);
  stacked('w3', hidden, dim);
  add('norm', 1, dim);
  offset += seqLen * (headDim / 2) * 4 * 2; // legacy freq_cis_real / freq_cis_imag, unused
  if (!shared) add('output', vocab, dim);
  if (offset > size) {
    throw new ModelLoadError(`${file}: truncated: the header describes ${offset} bytes of weights but the file has ${size}`);
  }
  return {
    id: file,
    format: 'llama2c',
    config: {
      dim,
      hiddenDim: hidden,
      nLayers,
      nHeads,
      nKvHeads,
      headDim,
      vocabSize: vocab,
      maxSeqLen: seqLen,
      normEps: 1e-5,
      qkvBias: false,
      rope: { style: 'interleaved', theta: 10000 },
    },
    tensors,
    tokenizer: null,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
}
