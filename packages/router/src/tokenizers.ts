/**
 * The router's tokenizers, one per model id, loaded on first use from the same model reference the
 * workers serve (@kcache/models: no native engine in the router). A model without a tokenizer
 * (llama2.c checkpoints) or one this router cannot open maps to null: such requests must send
 * token ids.
 *
 * Texts up to `inlineBytes` are encoded on the event loop (well under a millisecond); longer ones
 * on tokenizer threads (piscina), so that a megabyte prompt (the byte tokenizer takes ~0.7 s for
 * 4 MB, a BPE one longer) never stalls the other streams this router relays.
 */
import { resolveModel, type Tokenizer } from '@kcache/models';
import { Piscina } from 'piscina';

/** Texts longer than this (UTF-8 bytes) go to a tokenizer thread. */
export const INLINE_TOKENIZE_BYTES = 16 * 1024;

export interface TokenizersOptions {
  inlineBytes?: number;
  /** Tokenizer threads at most (default 2); started on the first long text, stopped after 30 s idle. */
  threads?: number;
}

export class Tokenizers {
  private readonly byModel = new Map<string, Tokenizer | null>();
  private readonly inlineBytes: number;
  private readonly threads: number;
  private pool: Piscina | null = null;

  constructor(o: TokenizersOptions = {}) {
    this.inlineBytes = o.inlineBytes ?? INLINE_TOKENIZE_BYTES;
    this.threads = o.threads ?? 2;
  }

  get(modelId: string): Tokenizer | null {
    if (!this.byModel.has(modelId)) {
      try {
        this.byModel.set(modelId, resolveModel(modelId).tokenizer);
      } catch {
        this.byModel.set(modelId, null);
      }
    }
    return this.byModel.get(modelId) ?? null;
  }

  /** The text's token ids (with BOS unless `addBos` is false), or null when the model has no tokenizer here. */
  async encode(modelId: string, text: string, addBos = true): Promise<number[] | null> {
    const tok = this.get(modelId);
    if (!tok) return null;
    if (Buffer.byteLength(text, 'utf8') <= this.inlineBytes) return tok.encode(text, { addBos });
    this.pool ??= new Piscina({
      // from src/ (tests run the sources) and from dist/ alike: the compiled thread module
      filename: new URL('../dist/tokenize-thread.js', import.meta.url).href,
      minThreads: 0,
      maxThreads: this.threads,
      idleTimeout: 30_000,
    });
    const ids: Uint32Array = await this.pool.run({ modelId, text, addBos });
    return Array.from(ids);
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
    this.pool = null;
  }
}
