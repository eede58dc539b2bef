// Writes small Hugging Face model directories with random weights, and keeps the exact f32
// values the file holds so the reference forward pass can use them.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '@kcache/engine';
import { encodeSafetensors, type FloatDType, type NativeModelConfig } from '@kcache/models';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './half.js';
import { tempDir } from './temp.js';

export interface TinyHfConfig {
  arch: 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  dtype: FloatDType;
  tied: boolean;
  ropeTheta?: number;
  llama3?: boolean;
  /** Split the weights over this many safetensors shards (with an index file). */
  shards?: number;
  seed?: number;
}

/** The smallest useful model: one layer, GQA 2/1, 64 tokens. */
export const SMALL_HF: TinyHfConfig = {
  arch: 'LlamaForCausalLM',
  dim: 32,
  hidden: 48,
  layers: 1,
  heads: 2,
  kvHeads: 1,
  vocab: 64,
  dtype: 'f32',
  tied: true,
};

export interface TinyHfModel {
  dir: string;
  /** Weights by the engine's canonical names, as the f32 values the file encodes. */
  weights: Map<string, Float32Array>;
  config: Record<string, unknown>;
}

function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export function writeTinyHfModel(c: TinyHfConfig): TinyHfModel {
  const dir = tempDir('kcache-hf-');
  mkdirSync(dir, { recursive: true });
  const rand = rng(c.seed ?? 7);
  const hd = c.dim / c.heads;
  const weights = new Map<string, Float32Array>();
  const tensors: { name: string; dtype: FloatDType; shape: number[]; data: Uint8Array }[] = [];
  const add = (hfName: string, ours: string, shape: number[], scale: number, shift = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const vals = new Float32Array(n);
    let data: Uint8Array;
    if (c.dtype === 'f32') {
      for (let i = 0; i < n; i++) vals[i] = shift + scale * (2 * rand() - 1);
      data = new Uint8Array(vals.buffer.slice(0));
    } else {
      const h = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const v = shift + scale * (2 * rand() - 1);
        h[i] = c.dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v);
        vals[i] = c.dtype === 'bf16' ? bf16ToF32(h[i] as number) : f16ToF32(h[i] as number);
      }
      data = new Uint8Array(h.buffer);
    }
    weights.set(ours, vals);
    tensors.push({ name: hfName, dtype: c.dtype, shape, data });
  };
  add('model.embed_tokens.weight', 'tok_embeddings', [c.vocab, c.dim], 1);
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    const q = `layers.${l}.`;
    add(`${p}input_layernorm.weight`, `${q}attention_norm`, [c.dim], 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, `${q}wq`, [c.heads * hd, c.dim], 1 / Math.sqrt(c.dim));
    add(`${p}self_attn.k_proj.weight`, `${q}wk`, [c.kvHeads * hd, c.dim], 1 / Math.sqrt(c.dim));
    add(`${p}self_attn.v_proj.weight`, `${q}wv`, [c.kvHeads * hd, c.dim], 1 / Math.sqrt(c.dim));
    if (c.arch === 'Qwen2ForCausalLM') {
      add(`${p}self_attn.q_proj.bias`, `${q}bq`, [c.heads * hd], 0.5);
      add(`${p}self_attn.k_proj.bias`, `${q}bk`, [c.kvHeads * hd], 0.5);
      add(`${p}self_attn.v_proj.bias`, `${q}bv`, [c.kvHeads * hd], 0.5);
    }
    add(`${p}self_attn.o_proj.weight`, `${q}wo`, [c.dim, c.heads * hd], 1 / Math.sqrt(c.dim));
    add(`${p}post_attention_layernorm.weight`, `${q}ffn_norm`, [c.dim], 0.1, 1);
    add(`${p}mlp.gate_proj.weight`, `${q}w1`, [c.hidden, c.dim], 1 / Math.sqrt(c.dim));
    add(`${p}mlp.down_proj.weight`, `${q}w2`, [c.dim, c.hidden], 1 / Math.sqrt(c.hidden));
    add(`${p}mlp.up_proj.weight`, `${q}w3`, [c.hidden, c.dim], 1 / Math.sqrt(c.dim));
  }
  add('model.norm.weight', 'norm', [c.dim], 0.1, 1);
  if (!c.tied) add('lm_head.weight', 'output', [c.vocab, c.dim], 1 / Math.sqrt(c.dim));

  const config: Record<string, unknown> = {
    architectures: [c.arch],
    hidden_size: c.dim,
    intermediate_size: c.hidden,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    vocab_size: c.vocab,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-6,
    rope_theta: c.ropeTheta ?? 10000,
    tie_word_embeddings: c.tied,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: { f32: 'float32', bf16: 'bfloat16', f16: 'float16' }[c.dtype],
  };
  if (c.llama3) {
    config.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const shards = c.shards ?? 1;
  if (shards === 1) {
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  } else {
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(tensors.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.slice(s * per, (s + 1) * per);
      for (const t of part) weightMap[t.name] = file;
      writeFileSync(join(dir, file), encodeSafetensors(part));
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  return { dir, weights, config };
}

/** The weight lookup the reference forward pass takes. */
export function weightSource(m: TinyHfModel): (name: string) => Float32Array {
  return (name) => {
    const w = m.weights.get(name);
    if (!w) throw new Error(`no weight ${name}`);
    return w;
  };
}

/**
 * The reference's model config, read from the config.json this helper wrote (not through the
 * engine's loader, so a loader mistake cannot hide in both sides). HF checkpoints rotate halves.
 */
export function referenceConfig(m: TinyHfModel): NativeModelConfig {
  const c = m.config as {
    architectures: string[];
    rope_scaling?: { factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };
  } & Record<
    | 'hidden_size'
    | 'intermediate_size'
    | 'num_hidden_layers'
    | 'num_attention_heads'
    | 'num_key_value_heads'
    | 'vocab_size'
    | 'max_position_embeddings'
    | 'rms_norm_eps'
    | 'rope_theta',
    number
  >;
  const s = c.rope_scaling;
  return {
    dim: c.hidden_size,
    hiddenDim: c.intermediate_size,
    nLayers: c.num_hidden_layers,
    nHeads: c.num_attention_heads,
    nKvHeads: c.num_key_value_heads,
    headDim: c.hidden_size / c.num_attention_heads,
    vocabSize: c.vocab_size,
    maxSeqLen: c.max_position_embeddings,
    normEps: c.rms_norm_eps,
    qkvBias: c.architectures[0] === 'Qwen2ForCausalLM',
    rope: {
      style: 'half-split',
      theta: c.rope_theta,
      ...(s
        ? {
            llama3Factor: s.factor,
            llama3LowFreqFactor: s.low_freq_factor,
            llama3HighFreqFactor: s.high_freq_factor,
            llama3OriginalMaxPos: s.original_max_position_embeddings,
          }
        : {}),
    },
  };
}
