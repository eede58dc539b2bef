// A GGUF (v3) writer for the engine's own weights, so llama.cpp can run the exact same model in
// the benchmark. Written by hand because the npm GGUF packages only read the format.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Engine } from '@kcache/engine';
import type { ModelSpec } from '@kcache/models';

const ALIGN = 32;
enum T {
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
}
const GGML_TYPE = { f32: 0, f16: 1, bf16: 30 } as const;
const FILE_TYPE = { f32: 0, f16: 1, bf16: 32 } as const;

class Writer {
  private parts: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

type Meta =
  | [string, T.U32 | T.F32 | T.STRING | T.BOOL, number | string | boolean]
  | [string, T.ARRAY, T.STRING | T.F32 | T.I32, (string | number)[]];

function writeMeta(w: Writer, [key, type, a, b]: Meta): void {
  w.str(key);
  w.u32(type);
  if (type === T.ARRAY) {
    const elemType = a as T;
    const items = b as (string | number)[];
    w.u32(elemType);
    w.u64(items.length);
    for (const it of items) {
      if (elemType === T.STRING) w.str(it as string);
      else if (elemType === T.F32) w.f32(it as number);
      else w.i32(it as number);
    }
  } else if (type === T.U32) w.u32(a as number);
  else if (type === T.F32) w.f32(a as number);
  else if (type === T.BOOL) w.push(Buffer.from([a ? 1 : 0]));
  else w.str(a as string);
}

/**
 * Hugging Face checkpoints rotate head halves; llama.cpp's llama architecture rotates adjacent
 * pairs. Reorders the rows of each head of wq/wk so both compute the same thing (the inverse of
 * the permutation in transformers' convert_llama_weights_to_hf.py).
 */
function halfSplitToInterleaved(raw: Uint8Array, rows: number, cols: number, headDim: number, elemBytes: number): Buffer {
  const out = Buffer.alloc(raw.byteLength);
  const rowBytes = cols * elemBytes;
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headDim);
    const within = r % headDim;
    const j = Math.floor(within / half);
    const i = within % half;
    const dst = head * headDim + 2 * i + j;
    out.set(raw.subarray(r * rowBytes, (r + 1) * rowBytes), dst * rowBytes);
  }
  return out;
}

/** Writes `spec`'s weights (as the engine holds them) to a llama-architecture GGUF file. */
export function writeGguf(path: string, spec: ModelSpec, engine: Engine): void {
  const c = spec.config;
  const dtype = spec.tensors.find((t) => t.name === 'layers.0.wq')?.dtype ?? 'f32';
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
  const meta: Meta[] = [
    ['general.architecture', T.STRING, 'llama'],
    ['general.name', T.STRING, spec.id],
    ['general.alignment', T.U32, ALIGN],
    ['general.file_type', T.U32, FILE_TYPE[dtype]],
    ['llama.context_length', T.U32, c.maxSeqLen],
    ['llama.embedding_length', T.U32, c.dim],
    ['llama.block_count', T.U32, c.nLayers],
    ['llama.feed_forward_length', T.U32, c.hiddenDim],
    ['llama.rope.dimension_count', T.U32, c.headDim],
    ['llama.attention.head_count', T.U32, c.nHeads],
    ['llama.attention.head_count_kv', T.U32, c.nKvHeads],
    ['llama.attention.layer_norm_rms_epsilon', T.F32, c.normEps],
    ['llama.rope.freq_base', T.F32, c.rope.theta],
    ['llama.vocab_size', T.U32, c.vocabSize],
    ['tokenizer.ggml.model', T.STRING, 'llama'],
    ['tokenizer.ggml.tokens', T.ARRAY, T.STRING, vocab.map((v) => v[0])],
    ['tokenizer.ggml.scores', T.ARRAY, T.F32, vocab.map((_, i) => -i)],
    ['tokenizer.ggml.token_type', T.ARRAY, T.I32, vocab.map((v) => v[1])],
    ['tokenizer.ggml.bos_token_id', T.U32, 1],
    ['tokenizer.ggml.eos_token_id', T.U32, 2],
    ['tokenizer.ggml.unknown_token_id', T.U32, 0],
    ['tokenizer.ggml.add_bos_token', T.BOOL, false],
  ];

  const head = new Writer();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(names.length);
  head.u64(meta.length);
  for (const m of meta) writeMeta(head, m);
  let offset = 0;
  const datas: Buffer[] = [];
  for (const [ours, theirs] of names) {
    const t = spec.tensors.find((x) => x.name === ours);
    if (!t) throw new Error(`tensor ${ours} missing from ${spec.id}`);
    const isNorm = t.rows === 1;
    let data: Buffer;
    let type: number;
    if (isNorm) {
      const f = engine.readWeight(ours); // norms must be f32 in GGUF
      data = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
      type = GGML_TYPE.f32;
    } else {
      const raw = engine.readWeightRaw(ours);
      const eb = t.dtype === 'f32' ? 4 : 2;
      const permute = c.rope.style === 'half-split' && (ours.endsWith('.wq') || ours.endsWith('.wk'));
      data = permute ? halfSplitToInterleaved(raw, t.rows, t.cols, c.headDim, eb) : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      type = GGML_TYPE[t.dtype];
    }
    head.str(theirs);
    if (isNorm) {
      head.u32(1);
      head.u64(t.cols);
    } else {
      head.u32(2);
      head.u64(t.cols); // ne[0] is the fastest-varying dimension
      head.u64(t.rows);
    }
    head.u32(type);
    head.u64(offset);
    datas.push(data);
    offset += Math.ceil(data.length / ALIGN) * ALIGN;
  }
  const headerBuf = head.concat();
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, headerBuf);
    writeSync(fd, Buffer.alloc((ALIGN - (headerBuf.length % ALIGN)) % ALIGN));
    for (const d of datas) {
      writeSync(fd, d);
      writeSync(fd, Buffer.alloc((ALIGN - (d.length % ALIGN)) % ALIGN));
    }
  } finally {
    closeSync(fd);
  }
}
