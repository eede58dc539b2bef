/** What a policy sees of one live worker at decision time. */
export interface WorkerView {
  id: string;
  /** Requests this router has in flight on the worker (its load signal). */
  load: number;
  /** Leading blocks of this request's prompt the index says the worker holds. */
  matchedBlocks: number;
  /**
   * How many of those hold their values in the device tier (the rest are host-tier KCache blocks,
   * whose attention reads values over the host link). Default: all of them.
   */
  deviceBlocks?: number;
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
