// A GGUF file's tokenizer (tokenizer.ggml.*) rebuilt as the Hugging Face tokenizer.json it was
// converted from, and run by @huggingface/tokenizers, so that it splits text as llama.cpp does:
// - "llama" (SentencePiece BPE): llama.cpp merges the adjacent pair whose concatenation is the
//   vocabulary entry of highest score; that is BPE whose merges are every split of every entry
//   into two entries, ranked by the entry's score (what transformers' GGUF converter builds),
//   with "▁" for spaces, a "▁" before each stretch of text (add_space_prefix) and byte fallback.
// - "gpt2" (byte-level BPE): the file's merges, split first by the pre-tokenizer regexes
//   llama.cpp uses for the file's tokenizer.ggml.pre.
// Control, user-defined and unknown tokens are matched whole in the text before anything else,
// as llama.cpp does with special tokens parsed.
import { ModelLoadError } from '../errors.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import { GgufTokenType, type GgufValue } from './format.js';

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3 =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** llama.cpp's pre-tokenizer regexes (llama-vocab.cpp), applied in order, by tokenizer.ggml.pre. */
const PRE_REGEXES: Record<string, string[]> = {
  default: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
  'gpt-2': [GPT2],
  mpt: [GPT2],
  olmo: [GPT2],
  'llama-bpe': [LLAMA3],
  llama3: [LLAMA3],
  'llama-v3': [LLAMA3],
  dbrx: [LLAMA3],
  'smaug-bpe': [LLAMA3],
  qwen2: [QWEN2],
  stablelm2: [QWEN2],
  smollm: ['\\p{N}', GPT2],
  starcoder: ['\\p{N}', GPT2],
  refact: ['\\p{N}', GPT2],
  'command-r': ['\\p{N}', GPT2],
  codeshell: ['\\p{N}', GPT2],
};
/** Pre-tokenizers whose words that are whole vocabulary entries skip the merges (llama.cpp's ignore_merges). */
const IGNORE_MERGES = new Set(['llama-bpe', 'llama3', 'llama-v3']);

export interface GgufTokenizer {
  tokenizer: HfTokenizer;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

function strings(meta: Map<string, GgufValue>, key: string, file: string): string[] {
  const v = meta.get(key);
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ModelLoadError(`${file}: ${key} must be an array of strings`);
  return v as string[];
}
function numbers(meta: Map<string, GgufValue>, key: string, n: number): number[] | null {
  const v = meta.get(key);
  return Array.isArray(v) && v.length === n ? (v as number[]).map(Number) : null;
}
const id = (meta: Map<string, GgufValue>, key: string): number | null => {
  const v = meta.get(key);
  return typeof v === 'number' && v >= 0 ? v : null;
};

/** The tokenizer of a GGUF file's metadata, with its BOS/EOS ids; null when the file has none. */
export function ggufTokenizer(meta: Map<string, GgufValue>, vocabSize: number, file: string): GgufTokenizer | null {
  const model = meta.get('tokenizer.ggml.model');
  if (model === undefined || model === 'none') return null;
  const tokens = strings(meta, 'tokenizer.ggml.tokens', file);
  const types = numbers(meta, 'tokenizer.ggml.token_type', tokens.length) ?? tokens.map(() => GgufTokenType.Normal);
  const bos = id(meta, 'tokenizer.ggml.bos_token_id');
  const eos = id(meta, 'tokenizer.ggml.eos_token_id');
  const eot = id(meta, 'tokenizer.ggml.eot_token_id');
  const unk = id(meta, 'tokenizer.ggml.unknown_token_id');
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    if (!(t in vocab)) vocab[t] = i;
  });
  const added = tokens.flatMap((content, i) => {
    const t = types[i];
    if (t !== GgufTokenType.Control && t !== GgufTokenType.UserDefined && t !== GgufTokenType.Unknown) return [];
    return [
      { id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t !== GgufTokenType.UserDefined },
    ];
  });

  let json: Record<string, unknown>;
  let addBosDefault: boolean;
  if (model === 'llama') {
    const scores = numbers(meta, 'tokenizer.ggml.scores', tokens.length) ?? tokens.map((_, i) => -i);
    const spacePrefix = meta.get('tokenizer.ggml.add_space_prefix') !== false;
    json = {
      added_tokens: added,
      normalizer: {
        type: 'Sequence',
        normalizers: [
          ...(spacePrefix ? [{ type: 'Prepend', prepend: '▁' }] : []),
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      pre_tokenizer: null,
      post_processor: null,
      model: {
        type: 'BPE',
        unk_token: unk !== null ? tokens[unk] : null,
        byte_fallback: true,
        fuse_unk: true,
        vocab,
        merges: spmMerges(tokens, types, scores),
      },
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(spacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
    };
    addBosDefault = true;
  } else if (model === 'gpt2') {
    const pre = String(meta.get('tokenizer.ggml.pre') ?? 'default');
    const regexes = PRE_REGEXES[pre];
    if (!regexes)
      throw new ModelLoadError(`${file}: tokenizer.ggml.pre '${pre}' is not supported (supported: ${Object.keys(PRE_REGEXES).join(', ')})`);
    const merges = strings(meta, 'tokenizer.ggml.merges', file).map((m) => {
      const at = m.indexOf(' ', 1);
      return [m.slice(0, at), m.slice(at + 1)];
    });
    json = {
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          ...regexes.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: null,
      model: { type: 'BPE', unk_token: null, byte_fallback: false, ignore_merges: IGNORE_MERGES.has(pre), vocab, merges },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    };
    addBosDefault = false;
  } else {
    throw new ModelLoadError(`${file}: tokenizer.ggml.model '${String(model)}' is not supported (supported: llama, gpt2)`);
  }
  const addBos = meta.get('tokenizer.ggml.add_bos_token');
  const cfg = {
    add_bos_token: typeof addBos === 'boolean' ? addBos : addBosDefault,
    bos_token: bos !== null ? tokens[bos] : undefined,
  };
  const tokenizer = HfTokenizer.fromObjects(json, cfg, { vocabSize, bosId: bos, source: `${file} (tokenizer.ggml.*)`, configSource: file });
  return { tokenizer, bosTokenId: bos, eosTokenIds: [...new Set([eos, eot].filter((x): x is number => x !== null))] };
}

/** What a GGUF file says of its chat template, as tokenizer_config.json's fields. */
export function ggufTokenizerConfig(meta: Map<string, GgufValue>): Record<string, unknown> {
  const tokens = meta.get('tokenizer.ggml.tokens');
  const text = (key: string) => {
    const i = id(meta, key);
    return Array.isArray(tokens) && i !== null && typeof tokens[i] === 'string' ? tokens[i] : undefined;
  };
  const template = meta.get('tokenizer.chat_template');
  return {
    ...(typeof template === 'string' ? { chat_template: template } : {}),
    bos_token: text('tokenizer.ggml.bos_token_id'),
    eos_token: text('tokenizer.ggml.eos_token_id'),
  };
}

/**
 * SentencePiece's merges as BPE merges: every way to split a normal entry into two entries,
 * ranked by the entry's score (highest first; earlier entries first among equal scores).
 */
function spmMerges(tokens: string[], types: number[], scores: number[]): [string, string][] {
  const index = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!index.has(t)) index.set(t, i);
  });
  const merges: { left: string; right: string; score: number; id: number }[] = [];
  tokens.forEach((t, i) => {
    if (types[i] !== GgufTokenType.Normal) return;
    const chars = Array.from(t);
    for (let s = 1; s < chars.length; s++) {
      const left = chars.slice(0, s).join('');
      const right = chars.slice(s).join('');
      if (index.has(left) && index.has(right)) merges.push({ left, right, score: scores[i] ?? 0, id: i });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id);
  return merges.map((m) => [m.left, m.right]);
}
