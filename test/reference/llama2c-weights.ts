// Reads a llama2.c checkpoint's tensors straight from the file, independently of the engine's
// loader, so the reference forward pass also checks how the engine maps the file.
import { readFileSync } from 'node:fs';
import type { NativeModelConfig } from '@kcache/models';
import type { WeightSource } from './forward.js';

export function llama2cWeights(path: string): { source: WeightSource; config: NativeModelConfig } {
  const buf = readFileSync(path);
  const header = Array.from({ length: 7 }, (_, i) => buf.readInt32LE(i * 4));
  const [dim, hidden, L, nh, nkv, vocabRaw, seqLen] = header as [number, number, number, number, number, number, number];
  const vocab = Math.abs(vocabRaw);
  const hd = dim / nh;
  const f = new Float32Array(buf.buffer, buf.byteOffset + 28, (buf.length - 28) / 4);
  const map = new Map<string, Float32Array>();
  let off = 0;
  const take = (n: number) => {
    const t = f.subarray(off, off + n);
    off += n;
    return t;
  };
  const stacked = (name: string, n: number) => {
    for (let l = 0; l < L; l++) map.set(`layers.${l}.${name}`, take(n));
  };
  map.set('tok_embeddings', take(vocab * dim));
  stacked('attention_norm', dim);
  stacked('wq', nh * hd * dim);
  stacked('wk', nkv * hd * dim);
  stacked('wv', nkv * hd * dim);
  stacked('wo', dim * nh * hd);
  stacked('ffn_norm', dim);
  stacked('w1', hidden * dim);
  stacked('w2', dim * hidden);
  stacked('w3', hidden * dim);
  map.set('norm', take(dim));
  return {
    // shared/models/README.md: eps 1e-5, interleaved RoPE with theta 10000, tied classifier
    config: {
      dim,
      hiddenDim: hidden,
      nLayers: L,
      nHeads: nh,
      nKvHeads: nkv,
      headDim: hd,
      vocabSize: vocab,
      maxSeqLen: seqLen,
      normEps: 1e-5,
      qkvBias: false,
      rope: { style: 'interleaved', theta: 10000 },
    },
    source: (name) => {
      const t = map.get(name);
      if (!t) throw new Error(`no tensor ${name}`);
      return t;
    },
  };
}
