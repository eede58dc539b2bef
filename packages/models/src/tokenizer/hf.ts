import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors.js';
import type { Tokenizer } from './types.js';

/**
 * A Hugging Face `tokenizer.json` (with `tokenizer_config.json` when present), loaded offline.
 *
 * BOS follows Hugging Face's `tokenizer(text)`: `add_bos_token` in tokenizer_config.json where it
 * is set (Llama and Mistral tokenizers rebuild their post-processor from it), otherwise whatever
 * tokenizer.json's post-processor puts before the text (Llama 3 adds <|begin_of_text|>; Qwen2's
 * and SmolLM's add nothing).
 */
export class HfTokenizer implements Tokenizer {
  private constructor(
    private readonly impl: HfTokenizerImpl,
    readonly vocabSize: number,
    /** The ids a plain prompt starts with (BOS, or nothing). */
    private readonly prefix: readonly number[],
  ) {}

  /** `bosId`: config.json's bos_token_id, used where tokenizer_config.json asks for BOS without naming it. */
  static fromDir(dir: string, vocabSize: number, bosId: number | null): HfTokenizer {
    const file = join(dir, 'tokenizer.json');
    const json = readJson(file);
    const cfgFile = join(dir, 'tokenizer_config.json');
    const cfg = existsSync(cfgFile) ? readJson(cfgFile) : {};
    return HfTokenizer.fromObjects(json, cfg, { vocabSize, bosId, source: file, configSource: cfgFile });
  }

  /**
   * From the parsed contents of tokenizer.json and tokenizer_config.json (a GGUF file's
   * tokenizer is built as these objects); `source` / `configSource` name them in errors.
   */
  static fromObjects(
    json: Record<string, unknown>,
    cfg: Record<string, unknown>,
    o: { vocabSize: number; bosId: number | null; source: string; configSource: string },
  ): HfTokenizer {
    const { vocabSize, bosId, source: file, configSource: cfgFile } = o;
    let impl: HfTokenizerImpl;
    try {
      impl = new HfTokenizerImpl(json, cfg);
    } catch (e) {
      throw new ModelLoadError(`${file}: unsupported tokenizer (${(e as Error).message})`);
    }
    let prefix: number[];
    if (typeof cfg.add_bos_token === 'boolean') {
      const named = tokenText(cfg.bos_token);
      const id = (named ? impl.token_to_id(named) : undefined) ?? bosId;
      if (cfg.add_bos_token && (id === undefined || id === null))
        throw new ModelLoadError(`${cfgFile}: add_bos_token is true but the model names no BOS token`);
      prefix = cfg.add_bos_token ? [id as number] : [];
    } else {
      // what the post-processor prepends to a text (suffixes such as a trailing EOS are not
      // wanted before generation, as in vLLM for decoder-only models); probed on a text that
      // gives at least one token, so the prepended ids stand apart from the text's
      const probes = ['a', ' the', ...Array.from({ length: 16 }, (_, id) => impl.decode([id]))];
      const probe = probes.find((t) => t && impl.encode(t, { add_special_tokens: false }).ids.length > 0) ?? 'a';
      const plain = impl.encode(probe, { add_special_tokens: false }).ids;
      const withSpecial = impl.encode(probe, { add_special_tokens: true }).ids;
      const at = plain.length > 0 ? indexOfRun(withSpecial, plain) : -1;
      prefix = at > 0 ? withSpecial.slice(0, at) : [];
    }
    return new HfTokenizer(impl, vocabSize, prefix);
  }

  /** Whether a plain prompt starts with the model's BOS (what `encode(text, { addBos: true })` does). */
  get addsBos(): boolean {
    return this.prefix.length > 0;
  }

  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = this.impl.encode(text, { add_special_tokens: false }).ids;
    return opts.addBos && this.prefix.length > 0 ? [...this.prefix, ...ids] : ids;
  }

  decode(ids: readonly number[]): string {
    return this.impl.decode([...ids], { skip_special_tokens: true });
  }
}

/** A special token in tokenizer_config.json: a string, or an AddedToken object with `content`. */
export function tokenText(v: unknown): string {
  if (typeof v === 'string') return v;
  const content = (v as { content?: unknown } | null)?.content;
  return typeof content === 'string' ? content : '';
}

/** Where `run` starts inside `ids`, or -1. */
function indexOfRun(ids: readonly number[], run: readonly number[]): number {
  outer: for (let i = 0; i + run.length <= ids.length; i++) {
    for (let j = 0; j < run.length; j++) if (ids[i + j] !== run[j]) continue outer;
    return i;
  }
  return -1;
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
