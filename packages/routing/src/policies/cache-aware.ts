/**
 * cache_aware: route to the worker with the lowest cost, where
 *
 *   cost(w) = (prompt tokens w would still prefill) + loadCostTokens × load(w)
 *
 * so a long cached prefix wins unless that worker is much busier (Dynamo's KV router weighs
 * prefill blocks against active load the same way). A cached token in the host tier (a KCache
 * worker's block, whose values its decode reads from host memory) saves hostHitCredit of a
 * prefill token and a device-tier one a whole one, so at equal load the worker holding the prefix
 * in device memory wins. A block in a worker's offload tiers (evicted from its pool to host RAM
 * or disk, copied back on a hit) saves offloadRamCredit / offloadDiskCredit of its prefill: one
 * minus its reload time over its prefill time, measured (docs/CACHE.md). Balance guard
 * (SGLang's): when the chosen
 * worker's load exceeds the least loaded worker's by more than balanceAbsThreshold and by more
 * than balanceRelThreshold times, the request spills to the least loaded worker instead, so a
 * hot prefix cannot pile every request onto one worker.
 *
 * A prompt no worker holds at least cacheThreshold of (SGLang's and vLLM's router rule: a new
 * prefix, or one that shares only a short header such as a chat template's first block) goes to
 * the least loaded worker; among equally loaded ones, to the least occupied cache, then by a
 * rendezvous hash of the first block no worker holds (spreadPick). New prefixes so spread over the cluster instead
 * of piling onto one worker that then evicts them while the others sit empty. Cost ties between
 * cache hits go the same way. Every router with the same view decides the same. Cost: O(workers).
 *
 * Reasons: "cache_hit" (the chosen worker holds part of the prompt), "new_prefix" (no worker
 * holds any of it), "low_match" (none holds cacheThreshold of it), "balance_spill" (the guard
 * fired).
 */
import { candidates, leastLoaded, type RoutingPolicy, spreadPick, type WorkerView } from '../types.js';

/**
 * 1 - (reload TTFT - pooled TTFT) / (prefill TTFT - pooled TTFT), measured with `pnpm -s kcache
 * bench routing --parts reload` (docs/CACHE.md, docs/BENCHMARKS.md).
 */
export const OFFLOAD_RAM_CREDIT = 0.96;
export const OFFLOAD_DISK_CREDIT = 0.92;

export interface CacheAwareConfig {
  /**
   * Prefill tokens one in-flight request is worth (default 64: measured with `kcache bench
   * routing`, 64 against 256 took the shared-prefix TTFT p50 from 2.6x to 7.6x round_robin's and
   * the hit rate from 79% to 99% of the oracle's; the balance guard still spills hot prefixes).
   */
  loadCostTokens: number;
  balanceAbsThreshold: number;
  balanceRelThreshold: number;
  /** What a host-tier cached token is worth against a device-tier one (0..1, default 0.8). */
  hostHitCredit: number;
  /** What a token in an offload tier is worth against a pooled one: 1 - reload time / prefill time (docs/CACHE.md). */
  offloadRamCredit: number;
  offloadDiskCredit: number;
  /**
   * Below this share of the prompt cached on any worker, the request is placed like a new prefix
   * (0..1, default 0.3 as in SGLang's and vLLM's routers; 0 turns it off).
   */
  cacheThreshold: number;
}

export const DEFAULT_CACHE_AWARE: CacheAwareConfig = {
  loadCostTokens: 64,
  balanceAbsThreshold: 8,
  balanceRelThreshold: 1.5,
  hostHitCredit: 0.8,
  offloadRamCredit: OFFLOAD_RAM_CREDIT,
  offloadDiskCredit: OFFLOAD_DISK_CREDIT,
  cacheThreshold: 0.3,
};

export function cacheAware(config: Partial<CacheAwareConfig> = {}): RoutingPolicy {
  const c = { ...DEFAULT_CACHE_AWARE, ...config };
  return (snapshot, request, exclude) => {
    const ws = candidates(snapshot, exclude);
    const longest = Math.max(0, ...ws.map((w) => w.matchedBlocks));
    // the first block no worker holds: where this prompt's new prefix starts (a shared header
    // before it, such as a chat template's first block, would send every new prefix to one worker)
    const hashes = request.blockHashes;
    const key = hashes[Math.min(longest, hashes.length - 1)] ?? '';
    if (longest * snapshot.blockSize < c.cacheThreshold * request.promptTokens || longest === 0) {
      const w = spreadPick(ws, key);
      return w ? { worker: w.id, reason: longest === 0 ? 'new_prefix' : 'low_match' } : null;
    }
    let cheapest: WorkerView[] = [];
    let bestCost = Number.POSITIVE_INFINITY;
    for (const w of ws) {
      const cached = Math.min(w.matchedBlocks * snapshot.blockSize, request.promptTokens);
      const ram = Math.min((w.offloadRamBlocks ?? 0) * snapshot.blockSize, cached);
      const disk = Math.min((w.offloadDiskBlocks ?? 0) * snapshot.blockSize, cached - ram);
      const device = Math.min(
        (w.deviceBlocks ?? w.matchedBlocks - (w.offloadRamBlocks ?? 0) - (w.offloadDiskBlocks ?? 0)) * snapshot.blockSize,
        cached - ram - disk,
      );
      const host = cached - ram - disk - device;
      const credit = device + c.hostHitCredit * host + c.offloadRamCredit * ram + c.offloadDiskCredit * disk;
      const cost = request.promptTokens - credit + c.loadCostTokens * w.load;
      if (cost < bestCost) {
        cheapest = [w];
        bestCost = cost;
      } else if (cost === bestCost) cheapest.push(w);
    }
    const best = spreadPick(cheapest, key) as WorkerView;
    const idle = leastLoaded(ws) as WorkerView;
    if (best.load - idle.load > c.balanceAbsThreshold && best.load > c.balanceRelThreshold * idle.load) {
      const spill = spreadPick(
        ws.filter((w) => w.load === idle.load),
        key,
      ) as WorkerView;
      return { worker: spill.id, reason: 'balance_spill' };
    }
    return { worker: best.id, reason: best.matchedBlocks > 0 ? 'cache_hit' : 'new_prefix' };
  };
}
