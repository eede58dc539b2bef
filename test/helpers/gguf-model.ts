// GGUF files the tests write: small SentencePiece and byte-level BPE vocabularies trained on a
// corpus, and llama-architecture models with random weights of one type.
import { GGML_TYPE, type GgufEntry, type GgufTensorOut, GgufTokenType, GgufType, type WeightDType, writeGgufFile } from '@kcache/models';
import { f32ToBf16, f32ToF16 } from './half.js';
import { BLOCK_VALUES, randomRow, rng } from './quant-blocks.js';

export const CORPUS = [
  'Once upon a time there was a little girl who loved the sea.',
  'She walked along the shore every day, and the waves sang to her.',
  "The cat's hat isn't red; it's blue, and they'll find it.",
  'Numbers like 12345 and 3.14159 appear in the text, with 2024-06-01 too.',
  'Café, naïve, über, résumé — and 日本語のテキスト, 中文文本, 한국어.',
  'Emoji 🙂🚀 and symbols ©®™ € £ ¥ mixed in.',
  'Tabs\tand  double  spaces,   triple spaces, and\nnew\n\nlines.',
];

/** Greedy pair merges over words (each a list of symbols), most frequent pair first. */
function trainMerges(words: string[][], n: number): [string, string][] {
  const merges: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const counts = new Map<string, number>();
    for (const w of words)
      for (let j = 0; j + 1 < w.length; j++) {
        const key = `${w[j]}\u0000${w[j + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    let best = '';
    let bestN = 1;
    for (const [k, c] of counts) if (c > bestN || (c === bestN && best !== '' && k < best)) [best, bestN] = [k, c];
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    for (const w of words) for (let j = 0; j + 1 < w.length; j++) if (w[j] === a && w[j + 1] === b) w.splice(j, 2, a + b);
  }
  return merges;
}

export interface Vocab {
  entries: GgufEntry[];
  size: number;
}

const SPECIALS: [string, GgufTokenType][] = [
  ['<|im_start|>', GgufTokenType.Control],
  ['<|im_end|>', GgufTokenType.Control],
  ['<|tool|>', GgufTokenType.UserDefined],
];

/** ChatML, as a GGUF file's `tokenizer.chat_template`. */
export const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** spmVocab with a chat template in the metadata. */
export function chatVocab(template: string): Vocab {
  const vocab = spmVocab();
  vocab.entries.push({ key: 'tokenizer.chat_template', type: GgufType.STRING, value: template });
  return vocab;
}

/** A SentencePiece ("llama") vocabulary: specials, 256 byte tokens, the corpus's characters, merged pieces. */
export function spmVocab(): Vocab {
  const words = CORPUS.flatMap((s) => s.split(' ').map((w) => Array.from(`▁${w.replaceAll(' ', '▁')}`)));
  const chars = [...new Set(words.flat())].sort();
  const merges = trainMerges(
    words.map((w) => [...w]),
    220,
  );
  const tokens: [string, number, GgufTokenType][] = [
    ['<unk>', 0, GgufTokenType.Unknown],
    ['<s>', 0, GgufTokenType.Control],
    ['</s>', 0, GgufTokenType.Control],
  ];
  for (let b = 0; b < 256; b++) tokens.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, GgufTokenType.Byte]);
  for (const [i, c] of chars.entries()) tokens.push([c, -10000 - i, GgufTokenType.Normal]);
  for (const [i, [a, b]] of merges.entries()) tokens.push([a + b, -i, GgufTokenType.Normal]);
  for (const [t, type] of SPECIALS) tokens.push([t, 0, type]);
  // a merge can recreate a character or an earlier piece: the first entry is the one kept
  const unique = tokens.filter(([t], i) => tokens.findIndex(([u]) => u === t) === i);
  return {
    size: unique.length,
    entries: [
      { key: 'tokenizer.ggml.model', type: GgufType.STRING, value: 'llama' },
      { key: 'tokenizer.ggml.tokens', type: GgufType.ARRAY, elem: GgufType.STRING, value: unique.map((t) => t[0]) },
      { key: 'tokenizer.ggml.scores', type: GgufType.ARRAY, elem: GgufType.F32, value: unique.map((t) => t[1]) },
      { key: 'tokenizer.ggml.token_type', type: GgufType.ARRAY, elem: GgufType.I32, value: unique.map((t) => t[2]) },
      { key: 'tokenizer.ggml.bos_token_id', type: GgufType.U32, value: 1 },
      { key: 'tokenizer.ggml.eos_token_id', type: GgufType.U32, value: 2 },
      { key: 'tokenizer.ggml.unknown_token_id', type: GgufType.U32, value: 0 },
    ],
  };
}

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for code points from 256. */
function byteChars(): string[] {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

/** A byte-level BPE ("gpt2") vocabulary with merges trained on the corpus, for pre-tokenizer `pre`. */
export function bpeVocab(pre: string): Vocab {
  const chars = byteChars();
  const enc = (s: string) => Array.from(new TextEncoder().encode(s), (b) => chars[b] as string);
  const gpt2 = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  const words = CORPUS.flatMap((s) => (s.match(gpt2) ?? []).map(enc));
  const merges = trainMerges(words, 220);
  const tokens = [...chars, ...merges.map(([a, b]) => a + b)];
  const unique = [...new Set(tokens)];
  const all = [...unique, '<|endoftext|>', ...SPECIALS.map((s) => s[0])];
  const types = [...unique.map(() => GgufTokenType.Normal), GgufTokenType.Control, ...SPECIALS.map((s) => s[1])];
  return {
    size: all.length,
    entries: [
      { key: 'tokenizer.ggml.model', type: GgufType.STRING, value: 'gpt2' },
      { key: 'tokenizer.ggml.pre', type: GgufType.STRING, value: pre },
      { key: 'tokenizer.ggml.tokens', type: GgufType.ARRAY, elem: GgufType.STRING, value: all },
      { key: 'tokenizer.ggml.token_type', type: GgufType.ARRAY, elem: GgufType.I32, value: types },
      { key: 'tokenizer.ggml.merges', type: GgufType.ARRAY, elem: GgufType.STRING, value: merges.map(([a, b]) => `${a} ${b}`) },
      { key: 'tokenizer.ggml.bos_token_id', type: GgufType.U32, value: unique.length },
      { key: 'tokenizer.ggml.eos_token_id', type: GgufType.U32, value: unique.length },
      { key: 'tokenizer.ggml.add_bos_token', type: GgufType.BOOL, value: false },
    ],
  };
}

export const TEST_SHAPE = { dim: 256, hidden: 512, layers: 2, heads: 4, kvHeads: 2, context: 512 };

/** Values of a matrix as `type`: float types encoded, quantized types as random blocks scaled to std ≈ `std`. */
function matrix(type: WeightDType, rows: number, cols: number, std: number, r: () => number): Uint8Array {
  if (type === 'f32' || type === 'f16' || type === 'bf16') {
    const n = rows * cols;
    const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()) * std;
    if (type === 'f32') return new Uint8Array(Float32Array.from({ length: n }, gauss).buffer);
    const enc = type === 'f16' ? f32ToF16 : f32ToBf16;
    return new Uint8Array(Uint16Array.from({ length: n }, () => enc(gauss())).buffer);
  }
  // the spread of this type's random blocks, measured once, sets the scale of the real ones
  const probe = randomRow(type, BLOCK_VALUES[type] * 8, rng(99)).values;
  const probeStd = Math.sqrt(probe.reduce((s, v) => s + v * v, 0) / probe.length);
  const rowsData = Array.from({ length: rows }, () => randomRow(type, cols, r, std / probeStd).bytes);
  const out = new Uint8Array(rowsData.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of rowsData) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/**
 * A model (TEST_SHAPE, tied embeddings) of random weights of `type`, with `vocab`: the llama
 * architecture, or qwen2 (q/k/v biases, RoPE on rotate-half pairs).
 */
export function writeTestModel(path: string, type: WeightDType, vocab: Vocab, seed = 7, arch: 'llama' | 'qwen2' = 'llama'): void {
  const s = TEST_SHAPE;
  const r = rng(seed);
  const headDim = s.dim / s.heads;
  const u32 = (key: string, value: number): GgufEntry => ({ key, type: GgufType.U32, value });
  const entries: GgufEntry[] = [
    { key: 'general.architecture', type: GgufType.STRING, value: arch },
    u32('general.alignment', 32),
    u32(`${arch}.context_length`, s.context),
    u32(`${arch}.embedding_length`, s.dim),
    u32(`${arch}.block_count`, s.layers),
    u32(`${arch}.feed_forward_length`, s.hidden),
    u32(`${arch}.rope.dimension_count`, headDim),
    u32(`${arch}.attention.head_count`, s.heads),
    u32(`${arch}.attention.head_count_kv`, s.kvHeads),
    { key: `${arch}.attention.layer_norm_rms_epsilon`, type: GgufType.F32, value: 1e-5 },
    { key: `${arch}.rope.freq_base`, type: GgufType.F32, value: 10000 },
    ...vocab.entries,
  ];
  const tensors: GgufTensorOut[] = [];
  const mat = (name: string, rows: number, cols: number, std = 1 / Math.sqrt(cols)) =>
    tensors.push({ name, dims: [cols, rows], ggmlType: GGML_TYPE[type], data: matrix(type, rows, cols, std, r) });
  const norm = (name: string) =>
    tensors.push({
      name,
      dims: [s.dim],
      ggmlType: GGML_TYPE.f32,
      data: new Uint8Array(Float32Array.from({ length: s.dim }, () => 1 + 0.2 * (r() - 0.5)).buffer),
    });
  // tied output: logits of std ~3, so top-2 margins stand above the 8-bit activation rounding of
  // llama.cpp's quantized kernels, and the model does not repeat one token
  mat('token_embd.weight', vocab.size, s.dim, 0.2);
  norm('output_norm.weight');
  for (let l = 0; l < s.layers; l++) {
    norm(`blk.${l}.attn_norm.weight`);
    mat(`blk.${l}.attn_q.weight`, s.dim, s.dim);
    mat(`blk.${l}.attn_k.weight`, s.kvHeads * headDim, s.dim);
    mat(`blk.${l}.attn_v.weight`, s.kvHeads * headDim, s.dim);
    mat(`blk.${l}.attn_output.weight`, s.dim, s.dim);
    if (arch === 'qwen2') {
      for (const [name, n] of [
        ['attn_q.bias', s.dim],
        ['attn_k.bias', s.kvHeads * headDim],
        ['attn_v.bias', s.kvHeads * headDim],
      ] as const)
        tensors.push({
          name: `blk.${l}.${name}`,
          dims: [n],
          ggmlType: GGML_TYPE.f32,
          data: new Uint8Array(Float32Array.from({ length: n }, () => 0.5 * (r() - 0.5)).buffer),
        });
    }
    norm(`blk.${l}.ffn_norm.weight`);
    mat(`blk.${l}.ffn_gate.weight`, s.hidden, s.dim);
    mat(`blk.${l}.ffn_down.weight`, s.dim, s.hidden);
    mat(`blk.${l}.ffn_up.weight`, s.hidden, s.dim);
  }
  writeGgufFile(path, entries, tensors);
}
