import type { KvEventEntry, WorkerSnapshot } from '@kcache/protocol';

export interface MatchResult {
  /** Leading blocks of the request's hashes the worker holds (a prefix: the first missing block ends it). */
  matchedBlocks: number;
  /** How many of those are in its device tier. */
  deviceBlocks: number;
  /** How many are in its offload tiers (host RAM, disk): reloaded into the pool instead of recomputed. */
  offloadRamBlocks: number;
  offloadDiskBlocks: number;
}

/** A worker's own account of its blocks at (epoch, seq): what the index resyncs from after a gap. */
export type { WorkerSnapshot };

export type ApplyResult = 'ok' | 'dup' | 'gap';

/**
 * Which worker holds which block (Dynamo's indexer interface): fed by each worker's KV events in
 * order, asked for prefix matches. Applying an event twice is a no-op, so any number of consumers
 * may feed one index. Implementations: Redis (shared by all routers) and memory (tests, and a
 * router without Redis).
 */
export interface BlockIndex {
  /** For each of `workers`, how many leading `hashes` it holds. */
  findMatches(hashes: readonly string[], workers: readonly string[]): Promise<Map<string, MatchResult>>;
  /** Applies one event of a worker's stream: "dup" if already applied, "gap" if events are missing (resync). */
  apply(worker: string, entry: KvEventEntry): Promise<ApplyResult>;
  /** Replaces a worker's blocks with its snapshot. */
  resync(worker: string, snapshot: WorkerSnapshot): Promise<void>;
  /** Forgets a worker; returns how many blocks it held. */
  removeWorker(worker: string): Promise<number>;
  /** Workers the index holds blocks or a cursor for. */
  indexedWorkers(): Promise<string[]>;
  workerBlockCount(worker: string): Promise<number>;
}

/**
 * The sequencing rule both implementations share: an event applies iff it is the next one of the
 * cursor's epoch, or the `cleared` at seq 1 that starts a newer epoch.
 */
export function sequenceCheck(cursor: { epoch: number; seq: number } | null, e: KvEventEntry): ApplyResult {
  const startsEpoch = e.event.type === 'cleared' && e.seq === 1;
  if (!cursor) return startsEpoch ? 'ok' : 'gap';
  if (e.epoch === cursor.epoch) {
    if (e.seq <= cursor.seq) return 'dup';
    return e.seq === cursor.seq + 1 ? 'ok' : 'gap';
  }
  if (e.epoch < cursor.epoch) return 'dup';
  return startsEpoch ? 'ok' : 'gap';
}
