// Request workloads for the routing benchmark: a synthetic shared-prefix mix and a scaled-down
// replay of the Mooncake conversation trace (shared/traces/README.md).
import { readFileSync } from 'node:fs';
import { Rng } from '@kcache/engine';
import { promptBlockHashes } from '@kcache/protocol';

export interface BenchRequest {
  /** Send time, ms after the start. */
  at: number;
  tokenIds: number[];
  maxTokens: number;
}

function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

/** Token ids of one byte-tokenizer "block" derived from an id: the same id always gives the same tokens. */
function blockTokens(id: number, n: number): number[] {
  const r = rng(id * 2654435761 + 17);
  return Array.from({ length: n }, () => 3 + Math.floor(r() * 256));
}

/**
 * `groups` system prompts of `prefixTokens` each; every request takes one group at random, adds
 * a unique suffix and arrives by a Poisson process at `ratePerSec` (0: all at once, to measure
 * throughput at saturation).
 */
export function sharedPrefixWorkload(o: {
  requests: number;
  groups: number;
  prefixTokens: number;
  suffixTokens: number;
  maxTokens: number;
  ratePerSec: number;
  seed: number;
}): BenchRequest[] {
  const r = rng(o.seed);
  const prefixes = Array.from({ length: o.groups }, (_, g) => [1, ...blockTokens(1000 + g, o.prefixTokens - 1)]);
  let t = 0;
  return Array.from({ length: o.requests }, (_, i) => {
    if (o.ratePerSec > 0) t += (-Math.log(1 - r()) / o.ratePerSec) * 1000;
    const g = Math.floor(r() * o.groups);
    return { at: t, tokenIds: [...(prefixes[g] as number[]), ...blockTokens(50_000 + i, o.suffixTokens)], maxTokens: o.maxTokens };
  });
}

/**
 * The first `requests` of a Mooncake trace: each 512-token hash block becomes `tokensPerBlock`
 * tokens (the same hash id, the same tokens), lengths scale by tokensPerBlock / 512, outputs are
 * scaled the same way and capped, and time is compressed by `timeScale`.
 */
export function mooncakeWorkload(o: {
  path: string;
  requests: number;
  tokensPerBlock: number;
  maxOutput: number;
  timeScale: number;
}): BenchRequest[] {
  const lines = readFileSync(o.path, 'utf8').split('\n').filter(Boolean).slice(0, o.requests);
  const scale = o.tokensPerBlock / 512;
  return lines.map((line) => {
    const e = JSON.parse(line) as { timestamp: number; input_length: number; output_length: number; hash_ids: number[] };
    const len = Math.max(2, Math.round(e.input_length * scale));
    const ids = [1, ...e.hash_ids.flatMap((h) => blockTokens(h, o.tokensPerBlock))].slice(0, len);
    return {
      at: e.timestamp / o.timeScale,
      tokenIds: ids,
      maxTokens: Math.max(1, Math.min(o.maxOutput, Math.round(e.output_length * scale))),
    };
  });
}

/**
 * The prompt-token hit rate of an ideal router with one unbounded cache: every full block
 * (of `blockSize`) whose whole prefix was seen before is a hit, never the block holding the
 * last prompt token (as in the workers).
 */
export function oracleHitRate(reqs: readonly BenchRequest[], blockSize: number): number {
  const seen = new Set<string>();
  let hit = 0;
  let total = 0;
  for (const r of reqs) {
    total += r.tokenIds.length;
    let hitting = true;
    for (const h of promptBlockHashes(r.tokenIds, blockSize, { modelId: 'oracle' })) {
      if (hitting && seen.has(h)) hit += blockSize;
      else hitting = false;
      seen.add(h);
    }
  }
  return hit / total;
}
