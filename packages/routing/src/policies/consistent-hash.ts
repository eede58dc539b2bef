/**
 * consistent_hash: requests with the same first `keyBlocks` prompt blocks go to the same worker,
 * via a hash ring with `replicas` virtual nodes per worker (adding or removing a worker moves
 * only its share of keys). The key is the chained hash of block min(n, keyBlocks) - 1, which
 * covers every block before it: keying on the first block alone sends every request of a trace
 * whose prompts share one system-prompt block to one worker. Cache-blind but affinity-preserving;
 * requests shorter than a block hash the empty key. Cost: O(workers × replicas) to build the
 * ring per decision (workers are few).
 */
import { createHash } from 'node:crypto';
import { candidates, type RoutingPolicy } from '../types.js';

const point = (s: string) => createHash('sha256').update(s).digest().readUInt32BE(0);

export function consistentHash(keyBlocks = 4, replicas = 64): RoutingPolicy {
  return (s, r, exclude) => {
    const ws = candidates(s, exclude);
    if (ws.length === 0) return null;
    const ring = ws.flatMap((w) => Array.from({ length: replicas }, (_, i) => ({ at: point(`${w.id}#${i}`), id: w.id })));
    ring.sort((a, b) => a.at - b.at);
    const key = point(r.blockHashes[Math.min(r.blockHashes.length, keyBlocks) - 1] ?? '');
    const hit = ring.find((p) => p.at >= key) ?? ring[0];
    return { worker: (hit as { id: string }).id, reason: 'consistent_hash' };
  };
}
