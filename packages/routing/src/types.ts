import { createHash } from 'node:crypto';

/** What a policy sees of one live worker at decision time. */
export interface WorkerView {
  id: string;
  /**
   * In-flight requests on the worker: what it reports itself (running + waiting, seen by every
   * router) or what this router has sent it since, whichever is larger.
   */
  load: number;
  /** Leading blocks of this request's prompt the index says the worker holds. */
  matchedBlocks: number;
  /**
   * How many of those hold their values in the device tier (the rest are host-tier KCache blocks,
   * whose attention reads values over the host link). Default: all of them.
   */
  deviceBlocks?: number;
  /**
   * How many of those sit in the worker's offload tiers (host RAM, disk): copied back into its
   * pool instead of recomputed, so worth less than a pooled block. Default 0.
   */
  offloadRamBlocks?: number;
  offloadDiskBlocks?: number;
  /** Share of its KV pool holding cached blocks, 0..1 (default 0): where a new prefix has room. */
  occupancy?: number;
}

export interface RoutingSnapshot {
  workers: readonly WorkerView[];
  blockSize: number;
}

export interface RoutingRequest {
  /** Full-block hashes of the prompt, in order. */
  blockHashes: readonly string[];
  promptTokens: number;
}

export interface Decision {
  worker: string;
  /** The branch taken: a metric label. */
  reason: string;
}

/** A policy picks one of the snapshot's workers (never one in `exclude`), or null if none is left. */
export type RoutingPolicy = (snapshot: RoutingSnapshot, request: RoutingRequest, exclude?: ReadonlySet<string>) => Decision | null;

export function candidates(s: RoutingSnapshot, exclude?: ReadonlySet<string>): WorkerView[] {
  return s.workers.filter((w) => !exclude?.has(w.id)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function leastLoaded(ws: readonly WorkerView[]): WorkerView | undefined {
  let best: WorkerView | undefined;
  for (const w of ws) if (!best || w.load < best.load) best = w;
  return best;
}

/** A 64-bit point of (key, worker) for rendezvous hashing: the same on every router. */
function rendezvousScore(key: string, worker: string): bigint {
  return createHash('sha256').update(key).update('\0').update(worker).digest().readBigUInt64BE(0);
}

/**
 * The worker a new prefix should start on, among `ws`: the least loaded, then the least occupied
 * cache (SGLang's "smallest tree" for a low-match request), then the highest rendezvous hash of
 * `key` (a block hash of the prompt) with the worker id. Every router with the same view picks the same
 * worker, distinct prefixes spread over equal workers, and no worker id is favoured.
 */
export function spreadPick(ws: readonly WorkerView[], key: string): WorkerView | undefined {
  let best: WorkerView | undefined;
  let bestScore = 0n;
  for (const w of ws) {
    const score = rendezvousScore(key, w.id);
    const better =
      !best ||
      w.load < best.load ||
      (w.load === best.load &&
        ((w.occupancy ?? 0) < (best.occupancy ?? 0) || ((w.occupancy ?? 0) === (best.occupancy ?? 0) && score > bestScore)));
    if (better) {
      best = w;
      bestScore = score;
    }
  }
  return best;
}
