import { resolve } from 'node:path';
import { ModelLoadError } from '../errors.js';
import { layerTensor, type ModelSpec, type NativeModelConfig, type NativeTensorSpec } from '../models/spec.js';
import { dtypeOfGgmlType, GGML_TYPE_NAMES, type GgufFile, type GgufValue } from './format.js';
import { readGguf } from './read.js';
import { ggufTokenizer } from './tokenizer.js';

/**
 * Architectures whose GGUF tensors the engine runs. llama.cpp's converter stores llama (and
 * Mistral, which it writes as llama) q/k rows permuted for RoPE on adjacent pairs; qwen2 keeps
 * Hugging Face's rotate-half order and has q/k/v biases.
 */
const ARCHITECTURES: Record<string, { rope: 'interleaved' | 'half-split'; qkvBias: boolean }> = {
  llama: { rope: 'interleaved', qkvBias: false },
  mistral: { rope: 'interleaved', qkvBias: false },
  qwen2: { rope: 'half-split', qkvBias: true },
};

const GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': 'tok_embeddings',
  'output_norm.weight': 'norm',
  'output.weight': 'output',
};
const LAYER_NAMES: Record<string, string> = {
  'attn_norm.weight': 'attention_norm',
  'attn_q.weight': 'wq',
  'attn_k.weight': 'wk',
  'attn_v.weight': 'wv',
  'attn_output.weight': 'wo',
  'attn_q.bias': 'bq',
  'attn_k.bias': 'bk',
  'attn_v.bias': 'bv',
  'ffn_norm.weight': 'ffn_norm',
  'ffn_gate.weight': 'w1',
  'ffn_down.weight': 'w2',
  'ffn_up.weight': 'w3',
};

/** A llama-architecture GGUF file (llama, mistral, qwen2): weights memory-mapped as stored, quantized or not. */
export function loadGguf(path: string): ModelSpec {
  const file = resolve(path);
  const gguf = readGguf(file);
  return ggufModelSpec(gguf, file);
}

export function ggufModelSpec(gguf: GgufFile, file: string): ModelSpec {
  const meta = gguf.metadata;
  const arch = String(meta.get('general.architecture') ?? '');
  const kind = ARCHITECTURES[arch];
  if (!kind)
    throw new ModelLoadError(
      `${file}: unsupported architecture '${arch || '(none)'}' (supported: ${Object.keys(ARCHITECTURES).join(', ')})`,
    );
  const num = (key: string, fallback?: number): number => {
    const v: GgufValue | undefined = meta.get(`${arch}.${key}`);
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (fallback !== undefined) return fallback;
    throw new ModelLoadError(`${file}: metadata ${arch}.${key} is missing`);
  };
  const scaling = meta.get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none')
    throw new ModelLoadError(`${file}: RoPE scaling '${String(scaling)}' is not supported (${arch}.rope.scaling.type)`);
  if (gguf.tensors.some((t) => t.name === 'rope_freqs.weight'))
    throw new ModelLoadError(`${file}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 scaling) are not supported`);

  const dim = num('embedding_length');
  const nHeads = num('attention.head_count');
  const tokens = meta.get('tokenizer.ggml.tokens');
  const embd = gguf.tensors.find((t) => t.name === 'token_embd.weight');
  const vocabSize = num('vocab_size', embd?.dims[1] ?? (Array.isArray(tokens) ? tokens.length : 0));
  const config: NativeModelConfig = {
    dim,
    hiddenDim: num('feed_forward_length'),
    nLayers: num('block_count'),
    nHeads,
    nKvHeads: num('attention.head_count_kv', nHeads),
    headDim: num('attention.key_length', dim / nHeads),
    vocabSize,
    maxSeqLen: num('context_length'),
    normEps: num('attention.layer_norm_rms_epsilon', 1e-5),
    qkvBias: kind.qkvBias,
    rope: { style: kind.rope, theta: num('rope.freq_base', 10000) },
  };

  const tensors: NativeTensorSpec[] = [];
  for (const t of gguf.tensors) {
    const m = /^blk\.(\d+)\.(.+)$/.exec(t.name);
    const name = m
      ? LAYER_NAMES[m[2] as string] !== undefined
        ? layerTensor(Number(m[1]), LAYER_NAMES[m[2] as string] as string)
        : undefined
      : GLOBAL_NAMES[t.name];
    if (name === undefined) throw new ModelLoadError(`${file}: tensor ${t.name} is not part of a ${arch} model kcache runs`);
    const dtype = dtypeOfGgmlType(t.ggmlType);
    if (!dtype)
      throw new ModelLoadError(
        `${file}: tensor ${t.name} has type ${GGML_TYPE_NAMES[t.ggmlType] ?? t.ggmlType}, which kcache does not run`,
      );
    if (t.dims.length > 2) throw new ModelLoadError(`${file}: tensor ${t.name} has ${t.dims.length} dimensions`);
    const cols = t.dims[0] ?? 0;
    const rows = t.dims[1] ?? 1;
    tensors.push({ name, dtype, rows, cols, file, offset: t.offset });
  }
  const tok = ggufTokenizer(meta, vocabSize, file);
  return {
    id: file,
    format: 'gguf',
    config,
    tensors,
    tokenizer: tok?.tokenizer ?? null,
    bosTokenId: tok?.bosTokenId ?? null,
    eosTokenIds: tok?.eosTokenIds ?? [],
  };
}
