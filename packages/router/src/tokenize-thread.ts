/**
 * The task a tokenizer thread runs (piscina): one text of one model, token ids back as a moved
 * buffer. Each thread keeps the tokenizers it has loaded.
 */
import { resolveModel, type Tokenizer } from '@kcache/models';
import { move } from 'piscina';

const loaded = new Map<string, Tokenizer>();

export default function tokenize({ modelId, text, addBos }: { modelId: string; text: string; addBos: boolean }): Uint32Array {
  let tok = loaded.get(modelId);
  if (!tok) {
    const t = resolveModel(modelId).tokenizer;
    if (!t) throw new Error(`model ${modelId} has no tokenizer`);
    tok = t;
    loaded.set(modelId, tok);
  }
  return move(Uint32Array.from(tok.encode(text, { addBos }))) as unknown as Uint32Array;
}
