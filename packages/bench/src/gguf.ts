// The engine's own weights as a llama-architecture GGUF file, so llama.cpp runs the exact same
// model in the benchmark (quantized tensors are written as the engine holds them: GGML blocks).
import type { Engine } from '@kcache/engine';
import {
  FILE_TYPE,
  GGML_TYPE,
  type GgufEntry,
  type GgufTensorOut,
  GgufType,
  type ModelSpec,
  rowBytes,
  type WeightDType,
  writeGgufFile,
} from '@kcache/models';

/**
 * Hugging Face checkpoints rotate head halves; llama.cpp's llama architecture rotates adjacent
 * pairs. Reorders the rows of each head of wq/wk so both compute the same thing (the inverse of
 * the permutation in transformers' convert_llama_weights_to_hf.py); rows move whole, so this
 * works on quantized rows as well.
 */
function halfSplitToInterleaved(raw: Uint8Array, rows: number, rowLen: number, headDim: number): Buffer {
  const out = Buffer.alloc(raw.byteLength);
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headDim);
    const within = r % headDim;
    const j = Math.floor(within / half);
    const i = within % half;
    const dst = head * headDim + 2 * i + j;
    out.set(raw.subarray(r * rowLen, (r + 1) * rowLen), dst * rowLen);
  }
  return out;
}

/** Writes `spec`'s weights (as the engine holds them) to a llama-architecture GGUF file. */
export function writeGguf(path: string, spec: ModelSpec, engine: Engine): void {
  const c = spec.config;
  const placed = (name: string): WeightDType => {
    const t = spec.tensors.find((x) => x.name === name);
    return t?.quantize ?? t?.dtype ?? 'f32';
  };
  const names: [string, string][] = [
    ['tok_embeddings', 'token_embd.weight'],
    ['norm', 'output_norm.weight'],
  ];
  if (spec.tensors.some((t) => t.name === 'output')) names.push(['output', 'output.weight']);
  const per: [string, string][] = [
    ['attention_norm', 'attn_norm.weight'],
    ['wq', 'attn_q.weight'],
    ['wk', 'attn_k.weight'],
    ['wv', 'attn_v.weight'],
    ['wo', 'attn_output.weight'],
    ['ffn_norm', 'ffn_norm.weight'],
    ['w1', 'ffn_gate.weight'],
    ['w2', 'ffn_down.weight'],
    ['w3', 'ffn_up.weight'],
  ];
  for (let l = 0; l < c.nLayers; l++) for (const [a, b] of per) names.push([`layers.${l}.${a}`, `blk.${l}.${b}`]);

  const vocab = Array.from({ length: c.vocabSize }, (_, i) => {
    if (i === 0) return ['<unk>', 2] as const;
    if (i === 1) return ['<s>', 3] as const;
    if (i === 2) return ['</s>', 3] as const;
    if (i < 259) return [`<0x${(i - 3).toString(16).toUpperCase().padStart(2, '0')}>`, 6] as const;
    return [`tok${i}`, 1] as const;
  });
  const u32 = (key: string, value: number): GgufEntry => ({ key, type: GgufType.U32, value });
  const f32 = (key: string, value: number): GgufEntry => ({ key, type: GgufType.F32, value });
  const entries: GgufEntry[] = [
    { key: 'general.architecture', type: GgufType.STRING, value: 'llama' },
    { key: 'general.name', type: GgufType.STRING, value: spec.id },
    u32('general.alignment', 32),
    u32('general.file_type', FILE_TYPE[placed('layers.0.wq')] ?? 0),
    u32('llama.context_length', c.maxSeqLen),
    u32('llama.embedding_length', c.dim),
    u32('llama.block_count', c.nLayers),
    u32('llama.feed_forward_length', c.hiddenDim),
    u32('llama.rope.dimension_count', c.headDim),
    u32('llama.attention.head_count', c.nHeads),
    u32('llama.attention.head_count_kv', c.nKvHeads),
    f32('llama.attention.layer_norm_rms_epsilon', c.normEps),
    f32('llama.rope.freq_base', c.rope.theta),
    u32('llama.vocab_size', c.vocabSize),
    { key: 'tokenizer.ggml.model', type: GgufType.STRING, value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: GgufType.ARRAY, elem: GgufType.STRING, value: vocab.map((v) => v[0]) },
    { key: 'tokenizer.ggml.scores', type: GgufType.ARRAY, elem: GgufType.F32, value: vocab.map((_, i) => -i) },
    { key: 'tokenizer.ggml.token_type', type: GgufType.ARRAY, elem: GgufType.I32, value: vocab.map((v) => v[1]) },
    u32('tokenizer.ggml.bos_token_id', 1),
    u32('tokenizer.ggml.eos_token_id', 2),
    u32('tokenizer.ggml.unknown_token_id', 0),
    { key: 'tokenizer.ggml.add_bos_token', type: GgufType.BOOL, value: false },
  ];

  const tensors: GgufTensorOut[] = names.map(([ours, theirs]) => {
    const t = spec.tensors.find((x) => x.name === ours);
    if (!t) throw new Error(`tensor ${ours} missing from ${spec.id}`);
    if (t.rows === 1) {
      const f = engine.readWeight(ours); // norms are f32 in GGUF
      return { name: theirs, dims: [t.cols], ggmlType: GGML_TYPE.f32, data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
    }
    const dtype = placed(ours);
    const raw = engine.readWeightRaw(ours);
    const permute = c.rope.style === 'half-split' && (ours.endsWith('.wq') || ours.endsWith('.wk'));
    const rowLen = rowBytes(dtype, t.cols);
    const data = permute ? halfSplitToInterleaved(raw, t.rows, rowLen, c.headDim) : raw;
    return { name: theirs, dims: [t.cols, t.rows], ggmlType: GGML_TYPE[dtype], data };
  });
  writeGgufFile(path, entries, tensors);
}
