import type { Engine } from './engine.js';
import { Rng } from './sampling/rng.js';
import { type SamplingParams, sample, validateSampling } from './sampling/sample.js';

export interface GenerateRequest {
  promptIds: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  seed?: number;
  ignoreEos?: boolean;
  /** Prefill chunk size in tokens (chunked prefill); default 512. */
  prefillChunk?: number;
}

export type FinishReason = 'stop' | 'length';

export interface GenerateResult {
  tokenIds: number[];
  finishReason: FinishReason;
  promptTokens: number;
  timings: {
    prefillMs: number;
    decodeMs: number;
    totalMs: number;
    prefillTokensPerSecond: number;
    decodeTokensPerSecond: number;
  };
}

/**
 * Offline generation of one sequence (the `kcache generate` command): the sequence gets the
 * first blocks of the pool, its prompt is prefilled in chunks, then one token per step.
 */
export async function generate(engine: Engine, req: GenerateRequest, onToken?: (id: number) => void): Promise<GenerateResult> {
  const { promptIds, maxTokens } = req;
  const { vocabSize, maxSeqLen, blockSize, numBlocks } = engine.info();
  const bad = validateSampling(req.sampling);
  if (bad) throw new RangeError(bad);
  if (promptIds.length === 0) throw new RangeError('prompt: at least one token is required');
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new RangeError(`prompt_ids: ${id} is outside the vocabulary (size ${vocabSize})`);
  }
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`max_tokens must be an integer >= 0, got ${maxTokens}`);
  const total = promptIds.length + maxTokens;
  if (total > maxSeqLen)
    throw new RangeError(`prompt (${promptIds.length} tokens) + max_tokens (${maxTokens}) exceeds the context length ${maxSeqLen}`);
  const blocksNeeded = Math.ceil(total / blockSize);
  if (blocksNeeded > numBlocks) throw new RangeError(`the sequence needs ${blocksNeeded} KV blocks but the pool has ${numBlocks}`);
  const blockTable = Array.from({ length: blocksNeeded }, (_, i) => i);
  const eos = new Set(req.ignoreEos ? [] : engine.model.eosTokenIds);
  const rng = new Rng(req.seed ?? 0);
  const chunk = req.prefillChunk ?? 512;

  const t0 = performance.now();
  let logits: Float32Array | undefined;
  for (let start = 0; start < promptIds.length; start += chunk) {
    const tokens = promptIds.slice(start, start + chunk);
    [logits] = await engine.step([{ tokens, startPos: start, blockTable }]);
  }
  const t1 = performance.now();
  const out: number[] = [];
  let finishReason: FinishReason = 'length';
  while (out.length < maxTokens && logits) {
    const next = sample(logits, req.sampling, rng);
    out.push(next);
    onToken?.(next);
    if (eos.has(next)) {
      finishReason = 'stop';
      break;
    }
    if (out.length === maxTokens) break;
    [logits] = await engine.step([{ tokens: [next], startPos: promptIds.length + out.length - 1, blockTable }]);
  }
  const t2 = performance.now();
  const decodeSteps = Math.max(0, out.length - 1);
  return {
    tokenIds: out,
    finishReason,
    promptTokens: promptIds.length,
    timings: {
      prefillMs: t1 - t0,
      decodeMs: t2 - t1,
      totalMs: t2 - t0,
      prefillTokensPerSecond: promptIds.length / ((t1 - t0) / 1000),
      decodeTokensPerSecond: decodeSteps > 0 ? decodeSteps / ((t2 - t1) / 1000) : 0,
    },
  };
}
