import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors.js';
import type { Tokenizer } from './types.js';

/** A Hugging Face `tokenizer.json` (with `tokenizer_config.json` when present), loaded offline. */
export class HfTokenizer implements Tokenizer {
  private constructor(
    private readonly impl: HfTokenizerImpl,
    readonly vocabSize: number,
    private readonly bosId: number | null,
  ) {}

  static fromDir(dir: string, vocabSize: number, bosId: number | null): HfTokenizer {
    const file = join(dir, 'tokenizer.json');
    const json = readJson(file);
    const cfgFile = join(dir, 'tokenizer_config.json');
    const cfg = existsSync(cfgFile) ? readJson(cfgFile) : {};
    try {
      return new HfTokenizer(new HfTokenizerImpl(json, cfg), vocabSize, bosId);
    } catch (e) {
      throw new ModelLoadError(`${file}: unsupported tokenizer (${(e as Error).message})`);
    }
  }

  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = this.impl.encode(text, { add_special_tokens: false }).ids;
    return opts.addBos && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  decode(ids: readonly number[]): string {
    return this.impl.decode([...ids], { skip_special_tokens: true });
  }
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ModelLoadError(`${file}: missing`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ModelLoadError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}
