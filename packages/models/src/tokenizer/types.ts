export interface Tokenizer {
  readonly vocabSize: number;
  /** Token ids for `text`; with addBos the model's BOS id is prepended when it has one. */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** Text for `ids`, skipping special tokens (BOS/EOS/padding). */
  decode(ids: readonly number[]): string;
}
