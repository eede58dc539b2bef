export interface Tokenizer {
  readonly vocabSize: number;
  /** Whether a plain prompt starts with the model's BOS token (as Hugging Face's tokenizer(text) does). */
  readonly addsBos: boolean;
  /** Token ids for `text`; with addBos, the BOS a plain prompt starts with where the tokenizer adds one. */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** Text for `ids`, skipping special tokens (BOS/EOS/padding). */
  decode(ids: readonly number[]): string;
}
