import type { Tokenizer } from './types.js';

/**
 * The dummy models' tokenizer: one token per UTF-8 byte, after three specials
 * (0 = <unk>, 1 = <s> BOS, 2 = </s> EOS), as in Llama's byte-fallback pieces.
 */
export const BYTE_TOKENIZER_SPECIALS = { unk: 0, bos: 1, eos: 2 } as const;
const OFFSET = 3;

export class ByteTokenizer implements Tokenizer {
  readonly addsBos = true;

  constructor(readonly vocabSize: number) {
    if (vocabSize < OFFSET + 256) throw new Error(`byte tokenizer needs a vocabulary of at least 259, got ${vocabSize}`);
  }

  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = Array.from(Buffer.from(text, 'utf8'), (b) => b + OFFSET);
    return opts.addBos ? [BYTE_TOKENIZER_SPECIALS.bos, ...ids] : ids;
  }

  decode(ids: readonly number[]): string {
    const bytes = ids.filter((id) => id >= OFFSET && id < OFFSET + 256).map((id) => id - OFFSET);
    return Buffer.from(bytes).toString('utf8');
  }
}
