import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ModelLoadError } from '../errors.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import { readSafetensorsHeader, type SafetensorsEntry } from './safetensors.js';
import { type GenerationDefaults, layerTensor, type ModelSpec, type NativeModelConfig, type NativeTensorSpec } from './spec.js';

const ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'];

// Hugging Face parameter names -> the engine's canonical names (per layer unless noted).
const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attention_norm',
  'self_attn.q_proj.weight': 'wq',
  'self_attn.k_proj.weight': 'wk',
  'self_attn.v_proj.weight': 'wv',
  'self_attn.o_proj.weight': 'wo',
  'self_attn.q_proj.bias': 'bq',
  'self_attn.k_proj.bias': 'bk',
  'self_attn.v_proj.bias': 'bv',
  'post_attention_layernorm.weight': 'ffn_norm',
  'mlp.gate_proj.weight': 'w1',
  'mlp.down_proj.weight': 'w2',
  'mlp.up_proj.weight': 'w3',
};

interface HfConfig {
  architectures?: string[];
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size?: number;
  max_position_embeddings?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  rope_scaling?: {
    rope_type?: string;
    type?: string;
    factor?: number;
    low_freq_factor?: number;
    high_freq_factor?: number;
    original_max_position_embeddings?: number;
  } | null;
  tie_word_embeddings?: boolean;
  sliding_window?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
}

/** A Hugging Face model directory: config.json, model.safetensors (or shards + index), tokenizer.json. */
export function loadHfDir(dirArg: string): ModelSpec {
  const dir = resolve(dirArg);
  const cfgFile = join(dir, 'config.json');
  if (!existsSync(cfgFile)) throw new ModelLoadError(`${cfgFile}: missing (a Hugging Face model directory needs config.json)`);
  let cfg: HfConfig;
  try {
    cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as HfConfig;
  } catch (e) {
    throw new ModelLoadError(`${cfgFile}: not valid JSON (${(e as Error).message})`);
  }
  const arch = cfg.architectures?.[0] ?? '';
  if (!ARCHITECTURES.includes(arch)) {
    throw new ModelLoadError(`${cfgFile}: unsupported architecture '${arch || '(none)'}' (supported: ${ARCHITECTURES.join(', ')})`);
  }
  const need = (key: keyof HfConfig): number => {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ModelLoadError(`${cfgFile}: ${key} must be a positive integer`);
    return v;
  };
  const dim = need('hidden_size');
  const nHeads = need('num_attention_heads');
  const nKvHeads = cfg.num_key_value_heads ?? nHeads;
  const headDim = cfg.head_dim ?? dim / nHeads;
  // Mistral's sliding window is not implemented: cap the context so attention stays exact.
  const maxPos = need('max_position_embeddings');
  const maxSeqLen = cfg.sliding_window ? Math.min(maxPos, cfg.sliding_window) : maxPos;
  const config: NativeModelConfig = {
    dim,
    hiddenDim: need('intermediate_size'),
    nLayers: need('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: need('vocab_size'),
    maxSeqLen,
    normEps: cfg.rms_norm_eps ?? 1e-6,
    qkvBias: arch === 'Qwen2ForCausalLM',
    rope: { style: 'half-split', theta: cfg.rope_theta ?? 10000, ...ropeScaling(cfg, cfgFile) },
  };

  const entries = readWeights(dir);
  const tensors: NativeTensorSpec[] = [];
  const take = (hfName: string, name: string) => {
    const e = entries.get(hfName);
    if (!e) return false;
    const [rows, cols] = e.shape.length === 1 ? [1, e.shape[0] ?? 0] : [e.shape[0] ?? 0, e.shape[1] ?? 0];
    if (e.shape.length > 2) throw new ModelLoadError(`${e.file}: tensor ${hfName} has ${e.shape.length} dimensions, expected 1 or 2`);
    tensors.push({ name, dtype: e.dtype, rows, cols, file: e.file, offset: e.offset });
    return true;
  };
  const required = (hfName: string, name: string) => {
    if (!take(hfName, name)) throw new ModelLoadError(`${dir}: weight ${hfName} not found in the safetensors files`);
  };
  required('model.embed_tokens.weight', 'tok_embeddings');
  required('model.norm.weight', 'norm');
  if (!cfg.tie_word_embeddings) take('lm_head.weight', 'output');
  for (let l = 0; l < config.nLayers; l++) {
    for (const [suffix, name] of Object.entries(LAYER_NAMES)) {
      const hfName = `model.layers.${l}.${suffix}`;
      if (suffix.endsWith('.bias')) {
        if (config.qkvBias) required(hfName, layerTensor(l, name));
      } else {
        required(hfName, layerTensor(l, name));
      }
    }
  }
  const gen = generationConfig(dir);
  const eosIds = (v: unknown): number[] => (v == null ? [] : Array.isArray(v) ? (v as number[]) : [v as number]);
  // generation_config.json may name more end tokens than config.json (Llama 3 Instruct: <|eot_id|>)
  const eos = [...new Set([...eosIds(cfg.eos_token_id), ...eosIds(gen.eos_token_id)])];
  const bos = cfg.bos_token_id ?? null;
  const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? HfTokenizer.fromDir(dir, config.vocabSize, bos) : null;
  return {
    id: dir,
    format: 'hf',
    config,
    tensors,
    tokenizer,
    bosTokenId: bos,
    eosTokenIds: eos,
    generationDefaults: generationDefaults(gen),
  };
}

interface GenerationConfigFile {
  do_sample?: boolean;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  eos_token_id?: number | number[];
}

function generationConfig(dir: string): GenerationConfigFile {
  const file = join(dir, 'generation_config.json');
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as GenerationConfigFile;
  } catch (e) {
    throw new ModelLoadError(`${file}: ${(e as Error).message}`);
  }
}

/** As vLLM reads them: do_sample false means greedy; the sampling fields given are defaults. */
function generationDefaults(g: GenerationConfigFile): GenerationDefaults {
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  return {
    temperature: g.do_sample === false ? 0 : num(g.temperature),
    topP: num(g.top_p),
    topK: num(g.top_k),
    minP: num(g.min_p),
    repetitionPenalty: num(g.repetition_penalty),
  };
}

function ropeScaling(cfg: HfConfig, cfgFile: string): Partial<NativeModelConfig['rope']> {
  const s = cfg.rope_scaling;
  if (!s) return {};
  const type = s.rope_type ?? s.type;
  if (type === 'default') return {};
  if (type !== 'llama3') throw new ModelLoadError(`${cfgFile}: unsupported rope_scaling type '${type}' (supported: llama3)`);
  return {
    llama3Factor: s.factor ?? 8,
    llama3LowFreqFactor: s.low_freq_factor ?? 1,
    llama3HighFreqFactor: s.high_freq_factor ?? 4,
    llama3OriginalMaxPos: s.original_max_position_embeddings ?? 8192,
  };
}

function readWeights(dir: string): Map<string, SafetensorsEntry> {
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return readSafetensorsHeader(single);
  const indexFile = join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexFile)) throw new ModelLoadError(`${dir}: no model.safetensors or model.safetensors.index.json`);
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(readFileSync(indexFile, 'utf8')) as typeof index;
  } catch (e) {
    throw new ModelLoadError(`${indexFile}: not valid JSON (${(e as Error).message})`);
  }
  if (!index.weight_map) throw new ModelLoadError(`${indexFile}: no weight_map`);
  const all = new Map<string, SafetensorsEntry>();
  for (const shard of new Set(Object.values(index.weight_map))) {
    for (const [name, e] of readSafetensorsHeader(join(dir, shard))) all.set(name, e);
  }
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (!all.has(name)) throw new ModelLoadError(`${join(dir, shard)}: tensor ${name} listed in the index is missing`);
  }
  return all;
}
