/** A small byte-level BPE tokenizer.json in the Hugging Face format (GPT-2 style). */
export const TINY_BPE_TOKENIZER = {
  version: '1.0',
  added_tokens: [
    { id: 12, content: '<s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
    { id: 13, content: '</s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: null,
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab: { h: 0, e: 1, l: 2, o: 3, he: 4, ll: 5, hell: 6, hello: 7, Ġ: 8, w: 9, r: 10, d: 11, '<s>': 12, '</s>': 13 },
    merges: ['h e', 'l l', 'he ll', 'hell o'],
  },
};
