/**
 * Block rules shared by every router and worker (vLLM's automatic prefix caching): prompts are
 * cut into blocks of DEFAULT_BLOCK_SIZE tokens unless a worker says otherwise; only full blocks are
 * cached; the last prompt token is always recomputed (its logits start the generation), so the
 * block holding it is never served from cache and is not part of the prompt's cacheable hashes.
 */
import { type BlockHash, type HashExtra, hashBlocks } from './block-hash.js';

export const DEFAULT_BLOCK_SIZE = 16;

/** Prompt tokens a cache could serve: all but the last. */
export function cacheableTokens(promptTokens: number): number {
  return Math.max(0, promptTokens - 1);
}

/** Hashes of the prompt's blocks that a worker may serve from its prefix cache, in order. */
export function promptBlockHashes(tokenIds: ArrayLike<number>, blockSize: number, extra: HashExtra): BlockHash[] {
  return hashBlocks(Array.prototype.slice.call(tokenIds, 0, cacheableTokens(tokenIds.length)), blockSize, extra);
}
