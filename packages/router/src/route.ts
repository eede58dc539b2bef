/**
 * The routing core, with no network in it: build each worker's view (index matches, this
 * router's recent prefixes, tiers, load, occupancy), let the policy decide, and retry on the
 * next choice when an attempt fails before its first token. `attempt` (the forwarder, injected)
 * is the only side effect; route() is unit-tested without gRPC or Redis.
 */
import type { MatchResult } from '@kcache/block-index';
import { cacheableTokens } from '@kcache/protocol';
import { type Decision, leastLoadedPolicy, type RoutingPolicy, type WorkerView } from '@kcache/routing';

/** What the worker pool knows of one worker that may take this request. */
export interface Candidate {
  id: string;
  /** In-flight requests (see WorkerView.load). */
  load: number;
  /** Blocks the worker caches by its own report, and at least those this router recently sent it. */
  cachedBlocks: number;
  numBlocks: number;
}

export interface RouteRequest {
  /** The prompt's cacheable block hashes (promptBlockHashes). */
  hashes: readonly string[];
  promptTokens: number;
  blockSize: number;
}

export interface RouteState {
  candidates: readonly Candidate[];
  /** The index's answer; null when it did not answer in time (routing falls back to least loaded). */
  matches: ReadonlyMap<string, MatchResult> | null;
  /** Leading blocks this router recently sent to each worker (RecentPrefixes.match). */
  recent: ReadonlyMap<string, number>;
}

export interface RouteChoice {
  worker: string;
  policy: string;
  reason: string;
  /** Prompt tokens the index expects the worker to serve from cache. */
  predictedCachedTokens: number;
  /** The prompt's blocks the worker holds neither by the index nor by what this router sent it: what it will add. */
  newBlocks: number;
  /**
   * Peer fetch: another candidate the index says holds more of the prompt than the chosen worker
   * (a spill, or a worker that just joined), and how many leading blocks; the chosen worker may
   * pull the difference from it instead of computing it. Null when none holds more.
   */
  peer: { worker: string; blocks: number } | null;
}

/**
 * One try on the chosen worker: "done" (served, or failed in a way another worker would not fix),
 * "retry" (failed before its first token: try the next choice), "skip" (not attempted: its breaker
 * refused).
 */
export type Attempt = (choice: RouteChoice) => Promise<'done' | 'retry' | 'skip'>;

export interface RouteOutcome {
  served: RouteChoice | null;
  /** Workers chosen and not served by, in order. */
  tried: string[];
}

export interface Router {
  policy: RoutingPolicy;
  policyName: string;
  maxAttempts: number;
}

const fallback = leastLoadedPolicy();

/** The policy's view of each candidate. Blocks only this router's memory knows have no tier yet: host-tier credit. */
export function buildViews(state: RouteState): WorkerView[] {
  return state.candidates.map((c) => {
    const m = state.matches?.get(c.id);
    return {
      id: c.id,
      load: c.load,
      matchedBlocks: Math.max(m?.matchedBlocks ?? 0, state.recent.get(c.id) ?? 0),
      deviceBlocks: m?.deviceBlocks ?? 0,
      offloadRamBlocks: m?.offloadRamBlocks ?? 0,
      offloadDiskBlocks: m?.offloadDiskBlocks ?? 0,
      occupancy: c.numBlocks > 0 ? Math.min(1, c.cachedBlocks / c.numBlocks) : 0,
    };
  });
}

/** One decision; null when every candidate is excluded. */
export function decide(router: Router, req: RouteRequest, state: RouteState, exclude: ReadonlySet<string>): RouteChoice | null {
  const snapshot = { workers: buildViews(state), blockSize: req.blockSize };
  const request = { blockHashes: req.hashes, promptTokens: req.promptTokens };
  const d: Decision | null = state.matches ? router.policy(snapshot, request, exclude) : fallback(snapshot, request, exclude);
  if (!d) return null;
  const matched = state.matches?.get(d.worker)?.matchedBlocks ?? 0;
  const held = Math.max(matched, state.recent.get(d.worker) ?? 0);
  return {
    worker: d.worker,
    policy: state.matches ? router.policyName : 'least_loaded_fallback',
    reason: state.matches ? d.reason : 'index_unavailable',
    predictedCachedTokens: Math.min(matched * req.blockSize, cacheableTokens(req.promptTokens)),
    newBlocks: Math.max(0, req.hashes.length - held),
    peer: peerFor(d.worker, state),
  };
}

/** The candidate other than `chosen` holding the longest prefix by the index, if longer than the chosen one's. */
export function peerFor(chosen: string, state: RouteState): { worker: string; blocks: number } | null {
  if (!state.matches) return null;
  const own = state.matches.get(chosen)?.matchedBlocks ?? 0;
  let best: { worker: string; blocks: number } | null = null;
  for (const c of state.candidates) {
    const m = state.matches.get(c.id)?.matchedBlocks ?? 0;
    if (c.id !== chosen && m > own && m > (best?.blocks ?? 0)) best = { worker: c.id, blocks: m };
  }
  return best;
}

/**
 * Decides, attempts, and on failure before the first token decides again without the workers
 * tried. `state` is read before each decision: loads change while requests are in flight.
 */
export async function route(
  router: Router,
  req: RouteRequest,
  state: () => RouteState,
  attempt: Attempt,
  /** Workers not to choose at all (those a migrating stream just left). */
  avoid: Iterable<string> = [],
): Promise<RouteOutcome> {
  const exclude = new Set<string>(avoid);
  const tried: string[] = [];
  for (let i = 0; i < router.maxAttempts; i++) {
    const choice = decide(router, req, state(), exclude);
    if (!choice) break;
    exclude.add(choice.worker);
    const r = await attempt(choice);
    if (r === 'done') return { served: choice, tried };
    if (r === 'retry') tried.push(choice.worker);
  }
  return { served: null, tried };
}
