/**
 * The router's tokenizers, one per model id, loaded on first use from the same model reference the
 * workers serve (@kcache/models: no native engine in the router). A model without a tokenizer
 * (llama2.c checkpoints) or one this router cannot open maps to null: such requests must send
 * token ids.
 */
import { resolveModel, type Tokenizer } from '@kcache/models';

export class Tokenizers {
  private readonly byModel = new Map<string, Tokenizer | null>();

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
}
